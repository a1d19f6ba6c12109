import KafkaClient
import Synchronization
import Testing
@testable import Worker

/// The shared state around the intake state machine: stores commit points under its lock and
/// applies the machine's actions to the consumer.
@Suite("Worker state: commit points and pausing (unit)")
struct WorkerStateTests {
    struct StoreFailed: Error {}
    let partition = KafkaTopicPartition(topic: "t", partition: 0)

    @Test("commit points whose store failed are offered again; stored ones are not")
    func storeFailureReoffers() throws {
        let state = WorkerState(highWater: 8, lowWater: 2)
        state.apply = { Issue.record("no backpressure expected: \($0)") }
        state.assign([partition])
        state.begin(partition, offset: 4)
        state.finish(partition, offset: 4)
        #expect(throws: StoreFailed.self) { try state.storeCommittable { _ in throw StoreFailed() } }
        var stored: [KafkaTopicPartitionOffset] = []
        #expect(try state.storeCommittable { stored = $0 }.map(\.offset) == [5], "offered again after the failure")
        #expect(stored.map(\.offset) == [5])
        #expect(try state.storeCommittable { _ in Issue.record("nothing moved: no store") }.isEmpty)
        // A commit that failed after the store (the async commit's report): offered again.
        state.forgetStored()
        #expect(try state.storeCommittable { _ in }.map(\.offset) == [5])
    }

    @Test("the machine's pause and resume reach the consumer, with every owned partition")
    func applyingActions() {
        let state = WorkerState(highWater: 2, lowWater: 0)
        let actions = Mutex<[IntakeStateMachine.Action]>([])
        state.apply = { action in actions.withLock { $0.append(action) } }
        let other = KafkaTopicPartition(topic: "t", partition: 1)
        state.assign([partition])
        state.begin(partition, offset: 0)
        state.begin(partition, offset: 1)
        state.assign([other])
        state.finish(partition, offset: 0)
        state.abandon([KafkaTopicPartitionOffset(topic: "t", partition: 0, offset: 1)])
        #expect(actions.withLock { $0 } == [.pause([partition]), .pause([other]), .resume([partition, other])])
    }

    @Test("positions of partitions no longer owned are ignored")
    func positionsOfRevokedPartitions() throws {
        let state = WorkerState(highWater: 8, lowWater: 2)
        state.assign([partition])
        _ = state.revoke([partition])
        state.advance([partition: 100])
        #expect(try state.storeCommittable { _ in Issue.record("a revoked partition's position was stored") }.isEmpty)
        state.assign([partition])
        state.advance([partition: 7])
        #expect(try state.storeCommittable { _ in }.map(\.offset) == [7])
    }
}
