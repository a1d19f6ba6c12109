import AuditLog
import Foundation
import Logging

/// Appends a request's audit row through the batcher, retrying store-wide failures (locked,
/// full, I/O) with back-off — no offset is committed without its row — and reports each
/// write to the health monitor (`/readyz` while failing, `/healthz` once failing too long).
struct AuditWriter: Sendable {
    let batcher: AuditBatcher
    let shutdown: ShutdownFlag
    let health: HealthMonitor
    let metrics: WorkerMetrics
    let logger: Logger

    /// The append's result, or nil when shutdown began before the row could be written.
    func write(_ entry: AuditEntry) async -> AuditDatabase.AppendResult? {
        var backoff = Backoff(shutdown)
        while true {
            let start = ContinuousClock.now
            do {
                let result = try await batcher.record(entry)
                metrics.auditWrite.record(ContinuousClock.now - start)
                health.auditWrite(succeeded: true)
                return result
            } catch {
                metrics.auditFailures.increment()
                health.auditWrite(succeeded: false)
                logger.error("audit write failed; retrying (offsets stay uncommitted)", metadata: ["attempt": "\(backoff.attempts + 1)", "error": "\(error)"])
                guard await backoff.wait() else { return nil }
            }
        }
    }
}
