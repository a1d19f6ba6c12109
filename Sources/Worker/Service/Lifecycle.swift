import Foundation
import KafkaClient
import ServiceLifecycle
import Synchronization

/// One long-running part of the worker as a `Service` of its `ServiceGroup`; `body` ends
/// at the part's turn in the ordered graceful shutdown (see ``WorkerService/makeParts()``).
struct WorkerPart: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async -> Void

    init(_ name: String, _ body: @escaping @Sendable () async -> Void) {
        description = name
        self.body = body
    }

    func run() async throws { await body() }
}

/// Set once a fatal client error (or a dead consumer) means this process cannot serve any
/// more: `/healthz` fails with the reason, the consume loop stops, and `sluice run` exits
/// non-zero after shutting down, so the orchestrator restarts it.
final class FatalLatch: Sendable {
    private struct State {
        var reason: String?
        var handlers: [@Sendable () -> Void] = []
    }
    private let state = Mutex(State())

    var reason: String? { state.withLock { $0.reason } }

    /// Records the first reason and runs the handlers (once).
    func trip(_ reason: String) {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.handlers = [] }
            return state.handlers
        }
        handlers.forEach { $0() }
    }

    /// Runs `handler` when the latch trips (at once if it has).
    func onTrip(_ handler: @escaping @Sendable () -> Void) {
        let tripped = state.withLock { state -> Bool in
            if state.reason != nil { return true }
            state.handlers.append(handler)
            return false
        }
        if tripped { handler() }
    }
}

/// The error `WorkerService.run()` ends with after a fatal error (exit status 1).
public struct WorkerFatalError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "fatal: \(reason)" }
}

/// The moment a graceful shutdown must be over (`worker.grace_period_ms` after it began).
/// Every shutdown phase — the final revocation's wait included — gets only what is left,
/// so the whole stop is bounded however long one phase takes.
final class ShutdownDeadline: Sendable {
    private let deadline = Mutex<Date?>(nil)

    /// Starts the clock (once); returns the deadline.
    @discardableResult
    func begin(grace: TimeInterval) -> Date {
        deadline.withLock { current in
            if let current { return current }
            let end = Date().addingTimeInterval(grace)
            current = end
            return end
        }
    }

    /// The earlier of `now + grace` and the shutdown deadline (when shutting down).
    func bound(grace: TimeInterval) -> Date {
        let limit = Date().addingTimeInterval(grace)
        return deadline.withLock { $0.map { min($0, limit) } ?? limit }
    }

    /// Time left before the deadline, at least `floor` (for calls that need a moment even
    /// when the deadline passed, e.g. leaving the group).
    func remaining(atLeast floor: Duration) -> Duration {
        guard let end = deadline.withLock({ $0 }) else { return floor }
        let left = Duration.milliseconds(Int64(end.timeIntervalSinceNow * 1000))
        return max(left, floor)
    }
}

/// Set when the grace period is over: retry loops still waiting give up (their records are
/// not committed, so the partition's next owner answers them).
final class ShutdownFlag: Sendable {
    private let flag = Atomic(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Capped exponential back-off (100 ms doubling to 5 s) that ends on shutdown: `wait()`
/// returns false, at once, when the task is cancelled or the shutdown flag is set — it
/// never spins.
struct Backoff {
    private(set) var attempts = 0
    let shutdown: ShutdownFlag?

    init(_ shutdown: ShutdownFlag? = nil) { self.shutdown = shutdown }

    mutating func wait() async -> Bool {
        attempts += 1
        if shutdown?.isSet == true || Task.isCancelled { return false }
        let delay = min(5_000, 100 << min(attempts - 1, 6))
        do {
            try await Task.sleep(for: .milliseconds(delay))
        } catch {
            return false
        }
        return shutdown?.isSet != true
    }
}

/// What a dead-letter copy of a record holds: the record's key, value and headers, cut to
/// fit the producer's `message.max.bytes` (1 MB unless `kafka.properties` says otherwise)
/// with the original size in a header.
struct DeadLetterCopy: Sendable {
    /// Bytes of the original headers kept; beyond that they are dropped (`sluice-original-headers-dropped`).
    static let maxHeaderBytes = 32_768

    /// Bytes of value a copy may keep under a producer's `message.max.bytes`: 90 % of it,
    /// less room for the key, the original headers and ours.
    static func maxValueBytes(messageMaxBytes: Int) -> Int {
        max(256, messageMaxBytes * 9 / 10 - maxHeaderBytes - 4_096)
    }

    let topic: String
    let partition: Int32
    let offset: Int64
    let key: [UInt8]?
    let value: [UInt8]
    let originalSize: Int
    let headers: [KafkaHeader]
    let headersDropped: Bool

    init(_ message: KafkaConsumerMessage, maxValueBytes: Int) {
        topic = message.topic
        partition = message.partition
        offset = message.offset
        key = message.key.map { Array($0.prefix(1_024)) }
        value = Array(message.value.prefix(maxValueBytes))
        originalSize = message.value.count
        let headerBytes = message.headers.reduce(0) { $0 + $1.name.utf8.count + ($1.value?.count ?? 0) }
        headersDropped = headerBytes > min(Self.maxHeaderBytes, maxValueBytes)
        headers = headersDropped ? [] : message.headers
    }

    func message(topic deadLetters: String, code: String, reason: String, worker: String) -> KafkaProducerMessage {
        var headers = self.headers
        headers += [
            KafkaHeader(name: "sluice-error-code", string: code),
            KafkaHeader(name: "sluice-error-message", string: String(reason.prefix(1_024))),
            KafkaHeader(name: "sluice-original-topic", string: topic),
            KafkaHeader(name: "sluice-original-partition", string: String(partition)),
            KafkaHeader(name: "sluice-original-offset", string: String(offset)),
            KafkaHeader(name: "sluice-original-size", string: String(originalSize)),
            KafkaHeader(name: "sluice-worker", string: worker),
        ]
        if value.count < originalSize { headers.append(KafkaHeader(name: "sluice-truncated", string: "true")) }
        if headersDropped { headers.append(KafkaHeader(name: "sluice-original-headers-dropped", string: "true")) }
        return KafkaProducerMessage(topic: deadLetters, key: key, value: value, headers: headers)
    }
}

/// The escalations topic's record: what a human agent needs to take the conversation over.
struct EscalationTranscript: Encodable {
    struct Turn: Encodable {
        let role: String
        let content: String
    }
    let requestID: String
    let conversationID: String?
    let channel: String?
    let reason: String
    let confidence: Double?
    let transcript: [Turn]
    let worker: String

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", conversationID = "conversation_id", channel, reason, confidence, transcript, worker
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(requestID, forKey: .requestID)
        try container.encode(conversationID, forKey: .conversationID)
        try container.encode(channel, forKey: .channel)
        try container.encode(reason, forKey: .reason)
        try container.encode(confidence, forKey: .confidence)
        try container.encode(transcript, forKey: .transcript)
        try container.encode(worker, forKey: .worker)
    }
}

extension Duration {
    /// Whole milliseconds, rounded down (for logs and librdkafka timeouts).
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
