import KafkaClient
import Testing
@testable import Worker

/// The shared state's commit and pause bookkeeping, driven call by call.
@Suite("Worker state: commit points and pausing (unit)")
struct WorkerStateTests {
    struct StoreFailed: Error {}
    let partition = KafkaTopicPartition(topic: "t", partition: 0)

    @Test("commit points whose store failed are offered again; stored ones are not")
    func storeFailureReoffers() {
        let state = WorkerState()
        state.assign([partition]) { _ in Issue.record("not paused: nothing to pause") }
        state.begin(partition, offset: 4)
        state.finish(partition, offset: 4)
        #expect(throws: StoreFailed.self) { try state.storeCommittable { _ in throw StoreFailed() } }
        var stored: [KafkaTopicPartitionOffset] = []
        #expect(state.storeCommittable { stored = $0 }.map(\.offset) == [5], "offered again after the failure")
        #expect(stored.map(\.offset) == [5])
        #expect(state.storeCommittable { _ in Issue.record("nothing moved: no store") }.isEmpty)
        // A commit that failed after the store (the async commit's report): offered again.
        state.forgetStored()
        #expect(state.storeCommittable { _ in }.map(\.offset) == [5])
    }

    @Test("partitions assigned while paused are paused at once; pause and resume report every owned partition")
    func pausing() {
        let state = WorkerState()
        state.assign([partition]) { _ in Issue.record("not paused yet") }
        var paused: [KafkaTopicPartition] = []
        #expect(state.setPaused(true) { paused = $0 })
        #expect(paused == [partition])
        #expect(!state.setPaused(true) { _ in Issue.record("already paused") })
        let other = KafkaTopicPartition(topic: "t", partition: 1)
        var newlyPaused: [KafkaTopicPartition] = []
        state.assign([other]) { newlyPaused = $0 }
        #expect(newlyPaused == [other])
        var resumed: [KafkaTopicPartition] = []
        #expect(state.setPaused(false) { resumed = $0 })
        #expect(Set(resumed) == [partition, other])
    }

    @Test("positions of partitions no longer owned are ignored")
    func positionsOfRevokedPartitions() {
        let state = WorkerState()
        state.assign([partition]) { _ in }
        state.revoke([partition])
        state.advance([partition: 100])
        #expect(state.storeCommittable { _ in Issue.record("a revoked partition's position was stored") }.isEmpty)
        state.assign([partition]) { _ in }
        state.advance([partition: 7])
        #expect(state.storeCommittable { _ in }.map(\.offset) == [7])
    }
}
