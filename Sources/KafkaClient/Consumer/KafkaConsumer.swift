import Dispatch
import Logging
import Synchronization

/// A member of a consumer group.
///
/// Messages come from ``messages`` (an async sequence; each `next()` polls librdkafka on
/// this consumer's own dispatch queue, never on the cooperative pool), and everything else
/// from ``events``. Keep iterating ``messages`` while partitions are paused: polling serves
/// rebalances and keeps the member in the group.
///
/// Offsets are never stored behind the application's back: call ``storeOffset(_:)`` once a
/// message is fully handled, then ``commit()`` (or set an auto-commit interval).
public final class KafkaConsumer: Sendable {
    private struct State {
        var closed = false
    }

    /// When positions were last read after an empty poll (see `reportIdlePositions`).
    private let idlePositionsReadAt = Mutex(ContinuousClock.now - .seconds(60))
    private let onIdlePositions: (@Sendable ([KafkaTopicPartition: Int64]) -> Void)?

    private let client: RDKafkaClient
    private let pollQueue: DispatchQueue
    private let state = Mutex(State())
    private let logger: Logger
    private let eventsContinuation: AsyncStream<KafkaConsumerEvent>.Continuation

    /// Assignments, revocations, commit results and errors, in the order they happened.
    public let events: AsyncStream<KafkaConsumerEvent>

    /// - Parameters:
    ///   - configuration: group and connection settings.
    ///   - logger: receives librdkafka's log lines.
    ///   - onAssignment: called on the poll thread when partitions are assigned, before any
    ///     of their messages can be returned by ``messages``.
    ///   - onIdlePositions: called on the poll thread, at most twice a second, after a poll
    ///     that returned no message, with the application's position in each assigned
    ///     partition: every offset below it was either returned by ``messages`` before that
    ///     poll, or is not a message (a transaction marker, a compacted record). Runs on the
    ///     thread that also runs the rebalance callbacks, so it never sees a position of an
    ///     earlier assignment.
    ///   - onRevocation: called on the poll thread when partitions are revoked, *before*
    ///     they are unassigned; it may block (bounded by the caller) to finish in-flight work
    ///     and commit, so nothing is committed past unfinished work by the next owner.
    public init(
        configuration: KafkaConsumerConfiguration,
        logger: Logger = Logger(label: "sluice.kafka.consumer"),
        onAssignment: (@Sendable (_ partitions: [KafkaTopicPartition]) -> Void)? = nil,
        onIdlePositions: (@Sendable (_ positions: [KafkaTopicPartition: Int64]) -> Void)? = nil,
        onRevocation: (@Sendable (_ partitions: [KafkaTopicPartition], _ lost: Bool) -> Void)? = nil
    ) throws {
        try configuration.validate()
        let (events, continuation) = AsyncStream.makeStream(of: KafkaConsumerEvent.self)
        let callbacks = RDKafkaCallbacks(logger: logger)
        self.onIdlePositions = onIdlePositions
        callbacks.onRebalance = { rebalance in
            switch rebalance {
            case .assigned(let partitions):
                logger.info("partitions assigned", metadata: ["partitions": "\(partitions)"])
                onAssignment?(partitions)
                continuation.yield(.partitionsAssigned(partitions))
            case .revoked(let partitions, let lost):
                logger.info("partitions revoked", metadata: ["partitions": "\(partitions)", "lost": "\(lost)"])
                onRevocation?(partitions, lost)
                continuation.yield(.partitionsRevoked(partitions, lost: lost))
            }
        }
        callbacks.onOffsetCommit = { continuation.yield(.offsetsCommitted($0)) }
        callbacks.onError = { error in
            logger.warning("kafka consumer error", metadata: ["error": "\(error)"])
            continuation.yield(.error(error))
        }
        self.client = try RDKafkaClient(kind: .consumer, properties: configuration.librdkafkaProperties, callbacks: callbacks)
        self.pollQueue = DispatchQueue(label: "sluice.kafka.consumer.poll")
        self.logger = logger
        self.events = events
        self.eventsContinuation = continuation
    }

    /// Joins the group for `topics` (replacing any earlier subscription).
    public func subscribe(topics: [String]) throws {
        try ensureOpen()
        try client.subscribe(topics: topics)
    }

    /// Reads `offsets` (each the next offset to read) directly, without joining the group —
    /// e.g. to read replies from the current end of a topic. Do not mix with ``subscribe(topics:)``.
    public func assign(_ offsets: [KafkaTopicPartitionOffset]) throws {
        try ensureOpen()
        try client.assign(offsets)
    }

    /// The messages of the assigned partitions. Ends when the consumer is closed or the
    /// iterating task is cancelled; throws on a fatal error.
    public var messages: Messages { Messages(consumer: self) }

    /// An async sequence of consumed messages.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = KafkaConsumerMessage
        let consumer: KafkaConsumer

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: KafkaConsumer
            public mutating func next() async throws -> KafkaConsumerMessage? {
                try await consumer.nextMessage()
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer) }
    }

    private func nextMessage() async throws -> KafkaConsumerMessage? {
        let cancelled = Atomic(false)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                pollQueue.async { [self] in
                    continuation.resume(with: Result { try pollUntilMessage(cancelled: cancelled) })
                }
            }
        } onCancel: {
            cancelled.store(true, ordering: .relaxed)
        }
    }

    /// Runs on `pollQueue`. Short poll timeouts bound how late a close or cancel is noticed.
    private func pollUntilMessage(cancelled: borrowing Atomic<Bool>) throws -> KafkaConsumerMessage? {
        while !cancelled.load(ordering: .relaxed), !state.withLock({ $0.closed }) {
            switch client.consumerPoll(timeoutMs: 100) {
            case .message(let message):
                return message
            case .error(let error):
                if let fatal = client.fatalError() { throw fatal }
                logger.warning("kafka consume error", metadata: ["error": "\(error)"])
                eventsContinuation.yield(.error(error))
            case .nothing:
                reportIdlePositions()
            }
        }
        return nil
    }

    /// After a poll that returned nothing, every message before the application's position
    /// has been handed to the caller, whose loop called `next()` again — so it has begun
    /// handling each. Reports the positions then (at most twice a second) on this thread.
    private func reportIdlePositions() {
        guard let onIdlePositions else { return }
        let now = ContinuousClock.now
        let due = idlePositionsReadAt.withLock { last in
            guard now - last >= .milliseconds(500) else { return false }
            last = now
            return true
        }
        guard due, let assigned = try? client.assignment(), !assigned.isEmpty, let positions = try? client.positions(assigned) else { return }
        let known = positions.filter { $0.offset >= 0 }
        onIdlePositions(Dictionary(known.map { ($0.topicPartition, $0.offset) }, uniquingKeysWith: { $1 }))
    }

    /// Marks `message` handled: its successor's offset will be committed.
    public func storeOffset(_ message: KafkaConsumerMessage) throws {
        try storeOffsets([message.nextOffset])
    }

    /// Stores offsets (each the *next* offset to read) for the next commit.
    public func storeOffsets(_ offsets: [KafkaTopicPartitionOffset]) throws {
        try ensureOpen()
        try client.storeOffsets(offsets)
    }

    /// Commits every stored offset and waits for the broker's answer.
    public func commit() async throws {
        try ensureOpen()
        try await runBlocking { [client] in try client.commit(nil, async: false) }
    }

    /// Commits exactly `offsets` (each the next offset to read) and waits for the answer.
    public func commit(_ offsets: [KafkaTopicPartitionOffset]) async throws {
        try ensureOpen()
        try await runBlocking { [client] in try client.commit(offsets, async: false) }
    }

    /// Commits `offsets` and blocks until the broker answers. Only for synchronous contexts
    /// such as the `onRevocation` handler (which runs on the poll thread); elsewhere use
    /// ``commit(_:)``.
    public func commitBlocking(_ offsets: [KafkaTopicPartitionOffset]) throws {
        guard !offsets.isEmpty else { return }
        try client.commit(offsets, async: false)
    }

    /// Starts committing every stored offset; the result arrives as
    /// ``KafkaConsumerEvent/offsetsCommitted(_:)`` on ``events``.
    public func commitAsync() throws {
        try ensureOpen()
        try client.commit(nil, async: true)
    }

    /// The group's committed offsets for `partitions` (`-1001` where none).
    public func committedOffsets(
        for partitions: [KafkaTopicPartition],
        timeout: Duration = .seconds(10)
    ) async throws -> [KafkaTopicPartitionOffset] {
        try ensureOpen()
        return try await runBlocking { [client] in
            try client.committed(partitions, timeoutMs: Int32(timeout.milliseconds))
        }
    }

    /// The low and high watermark of a partition (lag = high − committed).
    public func watermarks(
        for partition: KafkaTopicPartition,
        timeout: Duration = .seconds(10)
    ) async throws -> (low: Int64, high: Int64) {
        try ensureOpen()
        return try await runBlocking { [client] in
            try client.watermarks(partition, timeoutMs: Int32(timeout.milliseconds))
        }
    }

    /// Stops fetching from `partitions` until ``resume(_:)``; already fetched but unread
    /// messages of them are discarded and fetched again after resuming.
    public func pause(_ partitions: [KafkaTopicPartition]) throws {
        try ensureOpen()
        try client.pause(partitions)
    }

    /// Resumes fetching from paused partitions.
    public func resume(_ partitions: [KafkaTopicPartition]) throws {
        try ensureOpen()
        try client.resume(partitions)
    }

    /// The partitions this member owns now.
    public func assignment() throws -> [KafkaTopicPartition] {
        try ensureOpen()
        return try client.assignment()
    }

    /// Leaves the group cleanly (the final revocation runs `onRevocation`), commits stored
    /// offsets when auto-commit is on, and ends ``messages`` and ``events``. Idempotent.
    public func close() async throws {
        let first = state.withLock { state in
            defer { state.closed = true }
            return !state.closed
        }
        guard first else { return }
        // The serial poll queue runs this after any in-progress poll noticed `closed`.
        try await runBlocking(on: pollQueue) { [client] in try client.consumerClose() }
        eventsContinuation.finish()
    }

    private func ensureOpen() throws(KafkaError) {
        if state.withLock({ $0.closed }) {
            throw KafkaError(code: .closed, message: "the consumer is closed")
        }
    }
}
