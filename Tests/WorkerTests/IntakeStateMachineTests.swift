import KafkaClient
import Testing
@testable import Worker

/// The consume side's backpressure and commit rules, driven event by event.
@Suite("Intake state machine (unit)")
struct IntakeStateMachineTests {
    let p0 = KafkaTopicPartition(topic: "requests", partition: 0)
    let p1 = KafkaTopicPartition(topic: "requests", partition: 1)

    func offset(_ partition: KafkaTopicPartition, _ offset: Int64) -> KafkaTopicPartitionOffset {
        KafkaTopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: offset)
    }

    @Test("pauses every owned partition once at high water, resumes once at low water")
    func waterMarks() {
        var machine = IntakeStateMachine(highWater: 4, lowWater: 1)
        #expect(machine.assign([p1, p0]) == nil)
        #expect(machine.consume(p0, offset: 0) == nil)
        #expect(machine.consume(p1, offset: 0) == nil)
        #expect(machine.consume(p0, offset: 1) == nil)
        #expect(machine.consume(p1, offset: 1) == .pause([p0, p1]))
        #expect(machine.paused)
        // Records fetched before the pause took effect: held, no second pause.
        #expect(machine.consume(p0, offset: 2) == nil)
        #expect(machine.inFlight == 5 && machine.peakInFlight == 5)
        #expect(machine.finish(p0, offset: 0) == nil)  // 4
        #expect(machine.finish(p1, offset: 0) == nil)  // 3
        #expect(machine.finish(p0, offset: 1) == nil)  // 2
        #expect(machine.finish(p0, offset: 2) == .resume([p0, p1]))  // 1 = low water
        #expect(!machine.paused)
        #expect(machine.finish(p1, offset: 1) == nil)
        #expect(machine.peakInFlight == 5)
    }

    @Test("a partition assigned while paused is paused at once")
    func assignWhilePaused() {
        var machine = IntakeStateMachine(highWater: 1, lowWater: 0)
        _ = machine.assign([p0])
        #expect(machine.consume(p0, offset: 0) == .pause([p0]))
        #expect(machine.assign([p1]) == .pause([p1]))
        #expect(machine.finish(p0, offset: 0) == .resume([p0, p1]))
    }

    @Test("requests handed back (dropped, cut at shutdown) count toward resuming, and hold the commit point below them")
    func handBackResumes() {
        var machine = IntakeStateMachine(highWater: 2, lowWater: 0)
        _ = machine.assign([p0])
        _ = machine.consume(p0, offset: 10)
        #expect(machine.consume(p0, offset: 11) == .pause([p0]))
        #expect(machine.finish(p0, offset: 11) == nil)
        #expect(machine.abandon([offset(p0, 10)]) == .resume([p0]))
        // 11 finished but 10 was handed back: the commit point stays at 10.
        #expect(machine.takeCommitPoints() == [offset(p0, 10)])
    }

    @Test("commit points follow the lowest unfinished offset when requests finish out of order")
    func outOfOrder() {
        var machine = IntakeStateMachine(highWater: 100, lowWater: 10)
        _ = machine.assign([p0])
        for offset in Int64(5)...8 { _ = machine.consume(p0, offset: offset) }
        #expect(machine.takeCommitPoints() == [offset(p0, 5)])
        _ = machine.finish(p0, offset: 7)
        _ = machine.finish(p0, offset: 6)
        #expect(machine.takeCommitPoints() == [], "5 is unfinished: the point has not moved")
        _ = machine.finish(p0, offset: 5)
        #expect(machine.takeCommitPoints() == [offset(p0, 8)])
        _ = machine.finish(p0, offset: 8)
        #expect(machine.takeCommitPoints() == [offset(p0, 9)])
        #expect(machine.takeCommitPoints() == [], "taken points are not offered twice")
        machine.commitFailed()
        #expect(machine.takeCommitPoints() == [offset(p0, 9)], "a failed commit offers the point again")
    }

    @Test("offsets no message carried (transaction markers) do not hold the commit point once the consumer passed them")
    func idlePositions() {
        var machine = IntakeStateMachine(highWater: 100, lowWater: 10)
        _ = machine.assign([p0])
        _ = machine.consume(p0, offset: 3)
        _ = machine.finish(p0, offset: 3)
        machine.advance([p0: 6, p1: 99])  // p1 is not owned: ignored
        #expect(machine.takeCommitPoints() == [offset(p0, 6)])
    }

    @Test("revocation with work in flight: the revoked partition's point stays below its unfinished work; its requests stop counting")
    func revocationInFlight() {
        var machine = IntakeStateMachine(highWater: 3, lowWater: 1)
        _ = machine.assign([p0, p1])
        _ = machine.consume(p0, offset: 0)
        _ = machine.consume(p0, offset: 1)
        #expect(machine.consume(p1, offset: 0) == .pause([p0, p1]))
        _ = machine.finish(p0, offset: 0)
        #expect(machine.isBusy([p0]) && machine.isBusy([p1]))
        let (commit, action) = machine.revoke([p0])
        #expect(commit == [offset(p0, 1)], "offset 1 is unfinished: commit up to it, not past it")
        #expect(action == .resume([p1]), "p0's request no longer counts: 1 left = low water")
        #expect(!machine.isBusy([p0]) && machine.assigned == [p1])
        // A late finish of a revoked partition's request changes nothing.
        #expect(machine.finish(p0, offset: 1) == nil)
        #expect(machine.takeCommitPoints() == [offset(p1, 0)])
        #expect(machine.commitPoints(of: [p0, p1]) == [offset(p1, 0)])
    }
}
