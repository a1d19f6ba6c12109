import Foundation
import Testing
@testable import Worker

@Suite("Health conditions (unit)")
struct HealthMonitorTests {
    @Test("each condition fails health after its limit, and clears when it ends")
    func conditions() {
        let fatal = FatalLatch()
        let stall = StallClock()
        let monitor = HealthMonitor(fatal: fatal, auditFailureLimit: .seconds(2), consumeStallLimit: .seconds(3), schedulerStallLimit: .seconds(4),
                                    schedulerStall: { stall.value })
        let now = ContinuousClock.now
        #expect(monitor.failing(now: now).isEmpty)

        monitor.auditWrite(succeeded: false)
        #expect(monitor.auditFailing, "unready from the first failed write")
        #expect(monitor.failing(now: now).isEmpty, "not yet unhealthy")
        #expect(monitor.failing(now: now + .seconds(3)).map(\.0) == [.auditFailing])
        monitor.auditWrite(succeeded: false)
        #expect(monitor.failing(now: now + .seconds(3)).map(\.0) == [.auditFailing], "a second failure keeps the first one's time")
        monitor.auditWrite(succeeded: true)
        #expect(!monitor.auditFailing && monitor.failing(now: now + .seconds(3)).isEmpty)

        monitor.beginHandling()
        #expect(monitor.failing(now: .now + .seconds(4)).map(\.0) == [.consumeLoopStalled])
        monitor.endHandling()
        #expect(monitor.failing(now: .now + .seconds(4)).isEmpty)

        stall.value = .seconds(5)
        #expect(monitor.failing().map(\.0) == [.schedulerStalled])
        stall.value = nil

        fatal.trip("producer: fenced")
        #expect(monitor.failing().map(\.0) == [.fatalClientError] && monitor.failing().first?.1 == "producer: fenced")
    }
}

final class StallClock: @unchecked Sendable {  // written by the test thread only, before reads
    private let lock = NSLock()
    private var stored: Duration?
    var value: Duration? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
