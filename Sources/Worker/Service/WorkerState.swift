import Foundation
import KafkaClient

/// The ``IntakeStateMachine`` shared by the consume loop, finishing requests and the
/// rebalance callback (which runs synchronously on the consumer's poll thread, hence a lock
/// rather than an actor). Its actions — pause, resume — are applied under the same lock
/// (librdkafka's pause and resume are local calls that do not block), so the machine's
/// paused flag and librdkafka's state cannot part.
final class WorkerState: @unchecked Sendable {  // all fields behind `condition`
    private let condition = NSCondition()
    private var machine: IntakeStateMachine
    /// Applies an action to the consumer; set once, before the consumer subscribes.
    var apply: (IntakeStateMachine.Action) -> Void = { _ in }

    init(highWater: Int, lowWater: Int) {
        machine = IntakeStateMachine(highWater: highWater, lowWater: lowWater)
    }

    private func update<T>(_ body: (inout IntakeStateMachine) -> (T, IntakeStateMachine.Action?)) -> T {
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        let (result, action) = body(&machine)
        if let action { apply(action) }
        return result
    }

    var assigned: Set<KafkaTopicPartition> { read { $0.assigned } }
    var inFlight: Int { read { $0.inFlight } }
    var peakInFlight: Int { read { $0.peakInFlight } }
    var assignedPositions: [(KafkaTopicPartition, Int64?)] { read { machine in machine.assigned.map { ($0, machine.positions[$0]) } } }

    private func read<T>(_ body: (IntakeStateMachine) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(machine)
    }

    func assign(_ partitions: [KafkaTopicPartition]) { update { ((), $0.assign(partitions)) } }
    func begin(_ partition: KafkaTopicPartition, offset: Int64) { update { ((), $0.consume(partition, offset: offset)) } }
    func finish(_ partition: KafkaTopicPartition, offset: Int64) { update { ((), $0.finish(partition, offset: offset)) } }
    func abandon(_ offsets: [KafkaTopicPartitionOffset]) { update { ((), $0.abandon(offsets)) } }
    func advance(_ positions: [KafkaTopicPartition: Int64]) {
        update { machine in
            machine.advance(positions)
            return ((), nil)
        }
    }

    /// Forgets the revoked partitions; returns their commit points.
    func revoke(_ partitions: [KafkaTopicPartition]) -> [KafkaTopicPartitionOffset] {
        update { $0.revoke(partitions) }
    }

    /// Stores (`store`, e.g. librdkafka's offset store) the commit points of owned partitions
    /// that moved since the last successful store, under the lock, so no rebalance callback
    /// can come between reading the points and storing them. When `store` throws, the points
    /// count as not stored and are offered again.
    func storeCommittable(_ store: ([KafkaTopicPartitionOffset]) throws -> Void) throws -> [KafkaTopicPartitionOffset] {
        condition.lock()
        defer { condition.unlock() }
        let moved = machine.takeCommitPoints()
        guard !moved.isEmpty else { return [] }
        do {
            try store(moved)
        } catch {
            machine.commitFailed()
            throw error
        }
        return moved
    }

    /// Offers every commit point again (a commit failed after its points were stored).
    func forgetStored() {
        update { machine in
            machine.commitFailed()
            return ((), nil)
        }
    }

    /// The commit points of every owned partition (the final commit).
    var committable: [KafkaTopicPartitionOffset] { read { $0.commitPoints(of: $0.assigned) } }

    /// Blocks until fewer than `limit` requests are in flight, or until `deadline`; false
    /// when the deadline came first.
    func waitForRoom(below limit: Int, deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while machine.inFlight >= limit {
            if !condition.wait(until: deadline) { return machine.inFlight < limit }
        }
        return true
    }

    /// Waits until no request of `partitions` is in flight, or until `deadline`.
    func waitUntilIdle(_ partitions: Set<KafkaTopicPartition>, deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while machine.isBusy(partitions) {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }
}
