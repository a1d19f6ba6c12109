import KafkaClient

/// Tracks which offsets of each partition are in flight. Requests finish out of order; a
/// partition's commit point is its lowest unfinished offset, or — when nothing is in flight —
/// the offset after the last one consumed (or the consumer's position, when that is further:
/// transaction markers and compacted records are offsets no message carries). Gaps in the
/// offsets therefore never hold the commit point back.
public struct OffsetTracker: Sendable {
    private struct PartitionState: Sendable {
        /// Consumed and not finished.
        var pending: Set<Int64> = []
        /// Handed over unfinished (revocation): the commit point stays below the lowest.
        var abandonedFloor: Int64?
        /// The offset after the highest one consumed.
        var next: Int64 = 0
        /// The consumer's position when every offset below it had been consumed.
        var position: Int64?
        /// The commit point last handed out by `takeCommitPoints`.
        var taken: Int64?

        var commitPoint: Int64 {
            var point = pending.isEmpty ? max(next, position ?? next) : pending.min()!
            if let abandonedFloor { point = min(point, abandonedFloor) }
            return point
        }
    }

    private var partitions: [KafkaTopicPartition: PartitionState] = [:]

    public init() {}

    /// Registers a consumed offset as in flight.
    public mutating func begin(_ partition: KafkaTopicPartition, offset: Int64) {
        partitions[partition, default: PartitionState()].pending.insert(offset)
        partitions[partition]!.next = max(partitions[partition]!.next, offset + 1)
    }

    /// Marks an offset finished; returns false when it was not in flight (already finished,
    /// abandoned, or of a partition no longer tracked).
    @discardableResult
    public mutating func finish(_ partition: KafkaTopicPartition, offset: Int64) -> Bool {
        partitions[partition]?.pending.remove(offset) != nil
    }

    /// Forgets an in-flight offset that will not be finished here (its partition is being
    /// handed over); the commit point stays below it.
    public mutating func abandon(_ partition: KafkaTopicPartition, offset: Int64) {
        guard var state = partitions[partition], state.pending.remove(offset) != nil else { return }
        state.abandonedFloor = min(state.abandonedFloor ?? offset, offset)
        partitions[partition] = state
    }

    /// Records the consumer's position of a partition, read when every message before it had
    /// been consumed (``KafkaConsumer/idlePositions``).
    /// A partition not tracked yet (nothing consumed since its assignment) starts being
    /// tracked: every offset below the position is then a non-message.
    public mutating func advance(_ partition: KafkaTopicPartition, position: Int64) {
        var state = partitions[partition, default: PartitionState()]
        state.position = max(state.position ?? position, position)
        partitions[partition] = state
    }

    /// Offsets still in flight for `partition`.
    public func inFlight(_ partition: KafkaTopicPartition) -> Int { partitions[partition]?.pending.count ?? 0 }

    /// Total offsets in flight.
    public var inFlightCount: Int { partitions.values.reduce(0) { $0 + $1.pending.count } }

    /// The commit point of every tracked partition.
    public var commitPoints: [KafkaTopicPartitionOffset] {
        partitions.map { KafkaTopicPartitionOffset(topic: $0.key.topic, partition: $0.key.partition, offset: $0.value.commitPoint) }
    }

    /// The commit points that moved since the last call.
    public mutating func takeCommitPoints() -> [KafkaTopicPartitionOffset] {
        var moved: [KafkaTopicPartitionOffset] = []
        for (partition, state) in partitions where state.taken != state.commitPoint {
            partitions[partition]!.taken = state.commitPoint
            moved.append(KafkaTopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: state.commitPoint))
        }
        return moved
    }

    /// Offers every commit point again at the next `takeCommitPoints` (the last ones were not
    /// committed).
    public mutating func forgetTaken() {
        for partition in partitions.keys { partitions[partition]!.taken = nil }
    }

    /// Forgets partitions that were revoked.
    public mutating func remove(_ removed: [KafkaTopicPartition]) {
        for partition in removed { partitions[partition] = nil }
    }
}
