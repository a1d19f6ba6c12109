import KafkaClient

/// Tracks which offsets of each partition are finished. Requests finish out of order; a
/// partition's offset may be committed only up to (not including) its lowest unfinished one.
public struct OffsetTracker: Sendable {
    private struct PartitionState: Sendable {
        var pending: Set<Int64> = []
        var finished: Set<Int64> = []
        /// The next offset to commit: every offset below it is finished.
        var committable: Int64?
    }

    private var partitions: [KafkaTopicPartition: PartitionState] = [:]

    public init() {}

    /// Registers a consumed offset as in flight (offsets of a partition arrive in order).
    public mutating func begin(_ partition: KafkaTopicPartition, offset: Int64) {
        var state = partitions[partition, default: PartitionState()]
        if state.committable == nil { state.committable = offset }
        state.pending.insert(offset)
        partitions[partition] = state
    }

    /// Marks an offset finished; returns the new committable offset when it advanced.
    public mutating func finish(_ partition: KafkaTopicPartition, offset: Int64) -> Int64? {
        guard var state = partitions[partition], state.pending.remove(offset) != nil else { return nil }
        state.finished.insert(offset)
        var advanced: Int64?
        while let next = state.committable, state.finished.remove(next) != nil {
            state.committable = next + 1
            advanced = next + 1
        }
        partitions[partition] = state
        return advanced
    }

    /// Forgets an in-flight offset that will not be finished here (its partition is being
    /// handed over); the committable offset stays below it.
    public mutating func abandon(_ partition: KafkaTopicPartition, offset: Int64) {
        partitions[partition]?.pending.remove(offset)
    }

    /// Offsets still in flight for `partition`.
    public func inFlight(_ partition: KafkaTopicPartition) -> Int { partitions[partition]?.pending.count ?? 0 }

    /// Total offsets in flight.
    public var inFlightCount: Int { partitions.values.reduce(0) { $0 + $1.pending.count } }

    /// The next offset to commit for each partition (only past finished work).
    public var committableOffsets: [KafkaTopicPartitionOffset] {
        partitions.compactMap { partition, state in
            state.committable.map { KafkaTopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: $0) }
        }
    }

    /// Forgets partitions that were revoked.
    public mutating func remove(_ removed: [KafkaTopicPartition]) {
        for partition in removed { partitions[partition] = nil }
    }
}
