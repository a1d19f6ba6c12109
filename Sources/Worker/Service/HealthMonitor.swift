import Foundation
import Synchronization

/// What `/healthz` and `/readyz` report, from conditions the worker's parts record as they
/// happen. Unhealthy (the orchestrator should restart the process) when:
/// - a fatal Kafka client error was raised (``FatalLatch``);
/// - audit writes have failed, without one success, for longer than `auditFailureLimit`;
/// - one record has been in the consume loop for longer than `consumeStallLimit` (half of
///   librdkafka's `max.poll.interval.ms`: past the whole interval the group evicts the worker);
/// - the scheduler has had work and made no step for longer than `schedulerStallLimit`.
/// Not ready (kept out of the load balancer, partitions kept) while audit writes are failing.
public final class HealthMonitor: Sendable {
    public enum Condition: String, Sendable, CaseIterable {
        case fatalClientError = "fatal_client_error"
        case auditFailing = "audit_failing"
        case consumeLoopStalled = "consume_loop_stalled"
        case schedulerStalled = "scheduler_stalled"
    }

    struct State {
        var auditFailingSince: ContinuousClock.Instant?
        var handlingSince: ContinuousClock.Instant?
        var schedulerIdleSince: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    let fatal: FatalLatch
    let auditFailureLimit: Duration
    let consumeStallLimit: Duration
    let schedulerStallLimit: Duration
    /// How long the scheduler has had queued work without a step (nil: no work, or stepping).
    let schedulerStall: @Sendable () -> Duration?

    init(fatal: FatalLatch, auditFailureLimit: Duration, consumeStallLimit: Duration, schedulerStallLimit: Duration,
         schedulerStall: @escaping @Sendable () -> Duration?) {
        self.fatal = fatal
        self.auditFailureLimit = auditFailureLimit
        self.consumeStallLimit = consumeStallLimit
        self.schedulerStallLimit = schedulerStallLimit
        self.schedulerStall = schedulerStall
    }

    func auditWrite(succeeded: Bool) {
        state.withLock { $0.auditFailingSince = succeeded ? nil : ($0.auditFailingSince ?? .now) }
    }

    func beginHandling() { state.withLock { $0.handlingSince = .now } }
    func endHandling() { state.withLock { $0.handlingSince = nil } }

    /// The conditions that hold now, each with a human-readable reason.
    public func failing(now: ContinuousClock.Instant = .now) -> [(Condition, String)] {
        var result: [(Condition, String)] = []
        if let reason = fatal.reason { result.append((.fatalClientError, reason)) }
        let snapshot = state.withLock { $0 }
        if let since = snapshot.auditFailingSince, now - since > auditFailureLimit {
            result.append((.auditFailing, "audit writes have failed for \(now - since)"))
        }
        if let since = snapshot.handlingSince, now - since > consumeStallLimit {
            result.append((.consumeLoopStalled, "one record has held the consume loop for \(now - since)"))
        }
        if let stalled = schedulerStall(), stalled > schedulerStallLimit {
            result.append((.schedulerStalled, "the scheduler has had work and made no step for \(stalled)"))
        }
        return result
    }

    /// Readiness: false while audit writes fail (whatever for how long).
    public var auditFailing: Bool { state.withLock { $0.auditFailingSince != nil } }
}
