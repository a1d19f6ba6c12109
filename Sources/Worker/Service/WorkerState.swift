import Foundation
import KafkaClient

/// State shared by the consume loop, finishing requests and the rebalance callback (which
/// runs synchronously on the consumer's poll thread, hence a lock rather than an actor).
final class WorkerState: @unchecked Sendable {  // all fields behind `condition`
    private let condition = NSCondition()
    private var tracker = OffsetTracker()
    private(set) var assigned: Set<KafkaTopicPartition> = []
    private var paused = false

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }

    /// The next offset to consume of each partition (for lag).
    private(set) var positions: [KafkaTopicPartition: Int64] = [:]

    func begin(_ partition: KafkaTopicPartition, offset: Int64) {
        withLock {
            tracker.begin(partition, offset: offset)
            positions[partition] = offset + 1
        }
    }

    var assignedPositions: [(KafkaTopicPartition, Int64?)] {
        withLock { assigned.map { ($0, positions[$0]) } }
    }

    /// Marks an offset finished.
    func finish(_ partition: KafkaTopicPartition, offset: Int64) {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        if assigned.contains(partition) { tracker.finish(partition, offset: offset) }
    }

    /// Records the consumer's positions read after an empty poll (see
    /// ``KafkaConsumer/idlePositions``), for the partitions still owned.
    func advance(_ positions: [KafkaTopicPartition: Int64]) {
        withLock {
            for (partition, position) in positions where assigned.contains(partition) {
                tracker.advance(partition, position: position)
            }
        }
    }

    var inFlight: Int { withLock { tracker.inFlightCount } }

    /// Stores (`store`, e.g. librdkafka's offset store) the commit points of owned partitions
    /// that moved since the last successful store, under the lock, so no rebalance callback
    /// can come between reading the points and storing them. When `store` throws, the points
    /// count as not stored and are offered again.
    func storeCommittable(_ store: ([KafkaTopicPartitionOffset]) throws -> Void) rethrows -> [KafkaTopicPartitionOffset] {
        try withLock {
            let moved = tracker.takeCommitPoints().filter { assigned.contains($0.topicPartition) }
            guard !moved.isEmpty else { return [] }
            do {
                try store(moved)
            } catch {
                tracker.forgetTaken()
                throw error
            }
            return moved
        }
    }

    /// Offers every commit point again (a commit failed after its points were stored).
    func forgetStored() {
        withLock { tracker.forgetTaken() }
    }

    func committable(of partitions: Set<KafkaTopicPartition>) -> [KafkaTopicPartitionOffset] {
        withLock { tracker.commitPoints.filter { partitions.contains($0.topicPartition) } }
    }

    /// Records an assignment; while consumption is paused, `pause` pauses the new partitions
    /// too (under the lock, so a concurrent resume cannot miss them).
    func assign(_ partitions: [KafkaTopicPartition], pause: ([KafkaTopicPartition]) -> Void) {
        withLock {
            assigned.formUnion(partitions)
            if paused { pause(partitions) }
        }
    }

    func revoke(_ partitions: [KafkaTopicPartition]) {
        withLock {
            assigned.subtract(partitions)
            tracker.remove(partitions)
        }
    }

    /// Forgets in-flight offsets that were dropped before they started.
    func abandon(_ offsets: [KafkaTopicPartitionOffset]) {
        condition.lock()
        for offset in offsets { tracker.abandon(offset.topicPartition, offset: offset.offset) }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until no request of `partitions` is in flight, or until `deadline`.
    func waitUntilIdle(_ partitions: Set<KafkaTopicPartition>, deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while partitions.contains(where: { tracker.inFlight($0) > 0 }) {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Waits until nothing is in flight, or until `deadline`.
    func waitUntilAllIdle(deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while tracker.inFlightCount > 0 {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Flips the paused flag and, when it changed, runs `apply` with the owned partitions
    /// (librdkafka's pause or resume: local calls that do not block) under the lock, so the
    /// flag and librdkafka's state cannot part. Returns true when it changed.
    func setPaused(_ value: Bool, apply: ([KafkaTopicPartition]) -> Void) -> Bool {
        withLock {
            guard paused != value else { return false }
            paused = value
            apply(Array(assigned))
            return true
        }
    }
}
