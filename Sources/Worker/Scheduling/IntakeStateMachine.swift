import KafkaClient

/// Backpressure and offset bookkeeping of the consume side, as a state machine: every event
/// (an assignment, a consumed record, a finished or handed-back request, a revocation)
/// updates the state and returns what the caller must do with the consumer — pause or
/// resume the owned partitions, commit these offsets. It never calls the consumer itself, so
/// each rule is tested event by event without a broker.
///
/// The rules:
/// - requests held anywhere between consumption and commit count as in flight; reaching
///   `highWater` pauses every owned partition, falling to `lowWater` (by a finish, a hand-back
///   or a revocation) resumes them; a partition assigned while paused is paused at once;
/// - a partition's commit point is its lowest unfinished offset (``OffsetTracker``), so
///   requests finishing out of order never commit past unfinished work;
/// - a revocation hands back the revoked partitions' commit points (to commit before they
///   move) and forgets their in-flight offsets.
public struct IntakeStateMachine: Sendable {
    public enum Action: Equatable, Sendable {
        case pause([KafkaTopicPartition])
        case resume([KafkaTopicPartition])
    }

    public let highWater: Int
    public let lowWater: Int
    private var tracker = OffsetTracker()
    public private(set) var assigned: Set<KafkaTopicPartition> = []
    public private(set) var paused = false
    /// The next offset to consume of each partition (for lag).
    public private(set) var positions: [KafkaTopicPartition: Int64] = [:]

    /// `lowWater` < `highWater` (the configuration checks it).
    public init(highWater: Int, lowWater: Int) {
        self.highWater = highWater
        self.lowWater = lowWater
    }

    /// Requests consumed and not yet finished or handed back.
    public var inFlight: Int { tracker.inFlightCount }
    /// The most requests ever in flight at once (what backpressure bounds).
    public private(set) var peakInFlight = 0

    /// Whether any request of `partitions` is in flight.
    public func isBusy(_ partitions: Set<KafkaTopicPartition>) -> Bool {
        partitions.contains { tracker.inFlight($0) > 0 }
    }

    /// Partitions were assigned: while paused they are paused too.
    public mutating func assign(_ partitions: [KafkaTopicPartition]) -> Action? {
        assigned.formUnion(partitions)
        return paused && !partitions.isEmpty ? .pause(partitions) : nil
    }

    /// A record was consumed and is now in flight.
    public mutating func consume(_ partition: KafkaTopicPartition, offset: Int64) -> Action? {
        tracker.begin(partition, offset: offset)
        positions[partition] = offset + 1
        peakInFlight = max(peakInFlight, inFlight)
        guard !paused, inFlight >= highWater else { return nil }
        paused = true
        return .pause(ownedSorted)
    }

    /// A request ended (reply and audit row exist): its offset may be committed.
    public mutating func finish(_ partition: KafkaTopicPartition, offset: Int64) -> Action? {
        if assigned.contains(partition) { tracker.finish(partition, offset: offset) }
        return resumeIfDrained()
    }

    /// Requests that will not be finished here (dropped from the queue, cut at shutdown):
    /// the commit point stays below them, so the partition's next owner answers them.
    public mutating func abandon(_ offsets: [KafkaTopicPartitionOffset]) -> Action? {
        for offset in offsets { tracker.abandon(offset.topicPartition, offset: offset.offset) }
        return resumeIfDrained()
    }

    /// The consumer's positions after an empty poll (see ``KafkaConsumer/idlePositions``),
    /// for the partitions still owned: offsets below them that no message carried count as done.
    public mutating func advance(_ positions: [KafkaTopicPartition: Int64]) {
        for (partition, position) in positions where assigned.contains(partition) {
            tracker.advance(partition, position: position)
        }
    }

    /// Partitions are being revoked: returns their commit points (to commit before they
    /// move) and forgets them; in-flight work of theirs no longer counts.
    public mutating func revoke(_ partitions: [KafkaTopicPartition]) -> (commit: [KafkaTopicPartitionOffset], action: Action?) {
        let revoked = Set(partitions)
        let points = tracker.commitPoints.filter { revoked.contains($0.topicPartition) }
        assigned.subtract(partitions)
        tracker.remove(partitions)
        for partition in partitions { positions[partition] = nil }
        return (points, resumeIfDrained())
    }

    /// The commit points of owned partitions that moved since last taken (to store and
    /// commit); ``commitFailed()`` offers them again.
    public mutating func takeCommitPoints() -> [KafkaTopicPartitionOffset] {
        tracker.takeCommitPoints().filter { assigned.contains($0.topicPartition) }
    }

    /// Storing or committing the taken points failed: offer every point again.
    public mutating func commitFailed() {
        tracker.forgetTaken()
    }

    /// The commit points of `partitions` now (the final commit at shutdown).
    public func commitPoints(of partitions: Set<KafkaTopicPartition>) -> [KafkaTopicPartitionOffset] {
        tracker.commitPoints.filter { partitions.contains($0.topicPartition) }
    }

    private var ownedSorted: [KafkaTopicPartition] {
        assigned.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }

    private mutating func resumeIfDrained() -> Action? {
        guard paused, inFlight <= lowWater else { return nil }
        paused = false
        return .resume(ownedSorted)
    }
}
