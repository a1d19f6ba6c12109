import Dispatch
import Logging
import Synchronization

/// A member of a consumer group.
///
/// Messages come from ``messages`` (an async sequence that polls librdkafka on this
/// consumer's own dispatch queue, never on the cooperative pool, and takes what is already
/// fetched, up to its batch size, in one hop), and everything else from ``events``. Keep
/// iterating ``messages`` while partitions are paused: polling serves rebalances and keeps
/// the member in the group.
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
    private let revocations = RevocationLog()
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
        let revocations = self.revocations
        callbacks.onRebalance = { rebalance in
            switch rebalance {
            case .assigned(let partitions):
                logger.info("partitions assigned", metadata: ["partitions": "\(partitions)"])
                onAssignment?(partitions)
                continuation.yield(.partitionsAssigned(partitions))
            case .revoked(let partitions, let lost):
                logger.info("partitions revoked", metadata: ["partitions": "\(partitions)", "lost": "\(lost)"])
                onRevocation?(partitions, lost)
                revocations.record(partitions)
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

    /// The messages of the assigned partitions, taking up to 64 already-fetched messages per
    /// poll. Ends when the consumer is closed or the iterating task is cancelled; throws on a
    /// fatal error.
    public var messages: Messages { Messages(consumer: self, batchSize: 64) }

    /// The messages of the assigned partitions, taking up to `batchSize` already-fetched
    /// messages per poll (a caller that pauses partitions at a limit holds at most
    /// `batchSize − 1` more than its limit, since what one poll took is still returned).
    public func messages(batchSize: Int) -> Messages { Messages(consumer: self, batchSize: max(1, batchSize)) }

    /// An async sequence of consumed messages.
    ///
    /// What one poll took is returned in order by the following `next()` calls, without
    /// another hop to the poll queue; a revocation during that poll drops the taken messages
    /// of the revoked partitions (their next owner reads them from the committed offset).
    /// When the iterating task is cancelled, taken messages not yet returned are dropped too:
    /// they were never handed out, so nothing past them is committed.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = KafkaConsumerMessage
        let consumer: KafkaConsumer
        let batchSize: Int

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: KafkaConsumer
            let batchSize: Int
            private var taken: [KafkaConsumerMessage] = []
            private var index = 0

            init(consumer: KafkaConsumer, batchSize: Int) {
                self.consumer = consumer
                self.batchSize = batchSize
            }

            public mutating func next() async throws -> KafkaConsumerMessage? {
                if index == taken.count {
                    taken = try await consumer.nextMessages(upTo: batchSize)
                    index = 0
                    guard !taken.isEmpty else { return nil }
                } else if Task.isCancelled || consumer.isClosed {
                    taken = []
                    index = 0
                    return nil
                }
                defer { index += 1 }
                return taken[index]
            }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(consumer: consumer, batchSize: batchSize) }
    }

    private var isClosed: Bool { state.withLock { $0.closed } }

    /// One hop to the poll queue: waits for a message, then takes what else is already
    /// fetched (up to `limit`). Empty when closed or cancelled.
    private func nextMessages(upTo limit: Int) async throws -> [KafkaConsumerMessage] {
        let cancelled = Atomic(false)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                pollQueue.async { [self] in
                    continuation.resume(with: Result { try pollBatch(upTo: limit, cancelled: cancelled) })
                }
            }
        } onCancel: {
            cancelled.store(true, ordering: .relaxed)
        }
    }

    /// Runs on `pollQueue`. Short poll timeouts bound how late a close or cancel is noticed.
    private func pollBatch(upTo limit: Int, cancelled: borrowing Atomic<Bool>) throws -> [KafkaConsumerMessage] {
        guard let first = try pollUntilMessage(cancelled: cancelled) else { return [] }
        var batch = [first]
        guard limit > 1 else { return batch }
        batch.reserveCapacity(limit)
        var seen = revocations.count
        drain: while batch.count < limit {
            let result = client.consumerPoll(timeoutMs: 0)
            // A rebalance served by this poll revoked partitions: what was taken of them
            // before it belongs to their next owner. (A message this poll returned is of
            // the assignment after it.)
            let now = revocations.count
            if now != seen {
                let revoked = revocations.partitions(since: seen)
                batch.removeAll { revoked.contains($0.topicPartition) }
                seen = now
            }
            switch result {
            case .message(let message):
                batch.append(message)
            case .error(let error):
                if let fatal = client.fatalError() { throw fatal }
                logger.warning("kafka consume error", metadata: ["error": "\(error)"])
                eventsContinuation.yield(.error(error))
                break drain
            case .nothing:
                // Not an idle poll for `reportIdlePositions`: the batch is not handed out yet.
                break drain
            }
        }
        return batch
    }

    /// Runs on `pollQueue`: polls until a message (nil when closed or cancelled).
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

/// The partitions revoked so far, in order (appended on the poll thread by the rebalance
/// callback), so a poll that took several messages can tell which of them a rebalance
/// during it revoked.
private final class RevocationLog: Sendable {
    private let log = Mutex<[[KafkaTopicPartition]]>([])

    var count: Int { log.withLock { $0.count } }

    func record(_ partitions: [KafkaTopicPartition]) {
        log.withLock { $0.append(partitions) }
    }

    func partitions(since index: Int) -> Set<KafkaTopicPartition> {
        log.withLock { Set($0[index...].joined()) }
    }
}
