import AuditLog
import Foundation
import KafkaClient
import Testing

/// Shutdown is bounded by `worker.grace_period_ms` whatever the work in flight.
@Suite("Integration: bounded shutdown (real broker, real model)", .serialized)
struct ShutdownBoundTests {
    @Test("SIGTERM while 512-token sequences run: exit 0 within grace + 5 s, unfinished work handed back uncommitted, a restart answers all")
    func longSequences() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        defer { harness.stopAll() }
        // Free generation that will not stop early: 512 tokens take far longer than the grace period.
        let settings = ["SLUICE_KNOWLEDGE_DB": "", "SLUICE_WORKER_GRACE_PERIOD_MS": "3000", "SLUICE_WORKER_STOP_STRINGS": "QQQQZZZZ"]
        try await harness.startWorker("w1", extra: settings)
        let ids = (0..<6).map { "long-\($0)" }
        try await harness.send([(key: "k", value: WorkerHarness.request("short-0", extra: ["max_tokens": 1]), headers: [])]
            + ids.map { (key: "k", value: WorkerHarness.request($0, prompt: "Tell me a long story about the bank.", extra: ["max_tokens": 512]), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 1)  // the worker is answering
        let took = try await harness.terminate("w1", within: .seconds(3 + 5))
        let phases = harness.log("w1").split(separator: "\n").first { $0.contains("shutdown phases") }
        #expect(phases != nil, "the orderly stop ran to its end")
        print("SIGTERM to exit: \(took); \(phases ?? "")")  // the figure the lifecycle note reports
        // The running sequences were stopped, by the scheduler at the deadline or, when a step
        // outlasted it on a loaded machine, by the watchdog's exit 3.5 s past it (seen at
        // 6.5 s on a 2-core AVX2 machine with other suites running); either way unfinished
        // work stays uncommitted, which the checks below prove.
        let log = harness.log("w1")
        #expect(log.contains("requests handed back unanswered") || log.contains("shutdown overran the grace period"), "\(log)")

        let all = ["short-0"] + ids
        let audited = try await harness.expectNothingCommittedPastUnaudited(all)
        #expect(audited.count < all.count, "long sequences were cut, not finished")

        try await harness.startWorker("w2", extra: settings)
        try await harness.expectAnswered(all, timeout: 400)
    }

    @Test("SIGTERM during a broker outage: exit 0 within grace + 5 s, nothing committed past unaudited work, a restart answers all")
    func duringBrokerOutage() async throws {
        let broker = try await PrivateBroker()
        defer { broker.kill() }
        let harness = try await WorkerHarness(model: "echo", partitions: 1, brokers: broker.address)
        defer { harness.stopAll() }
        let settings = ["SLUICE_WORKER_GRACE_PERIOD_MS": "3000"]
        try await harness.startWorker("w1", extra: settings)
        let ids = (0..<1_000).map { "broker-outage-\($0)" }
        try await harness.send(ids.map { (key: "k", value: WorkerHarness.request($0), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 20)  // the worker is answering
        try await broker.stop()
        let took = try await harness.terminate("w1", within: .seconds(3 + 5))
        print("SIGTERM to exit during a broker outage: \(took)")
        broker.resume()
        _ = try await harness.expectNothingCommittedPastUnaudited(ids)
        try await harness.startWorker("w2", extra: settings)
        try await harness.expectAnswered(ids)
    }

    @Test("SIGTERM while the audit database is locked: exit 0 within grace + 5 s, nothing committed past unaudited work, a restart answers all")
    func duringAuditOutage() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        let settings = ["SLUICE_WORKER_GRACE_PERIOD_MS": "3000", "SLUICE_AUDIT_BUSY_TIMEOUT_MS": "100"]
        try await harness.startWorker("w1", extra: settings)
        try await harness.send([(key: "k", value: WorkerHarness.request("audit-before"), headers: [])])
        _ = try await harness.auditDatabase(rows: 1)
        let lock = try SQLiteWriteLock(path: harness.auditPath)
        let ids = (0..<20).map { "audit-outage-\($0)" }
        try await harness.send(ids.map { (key: "k", value: WorkerHarness.request($0), headers: []) })
        try await harness.waitForLog("w1", containing: "audit write failed")
        let took = try await harness.terminate("w1", within: .seconds(3 + 5))
        print("SIGTERM to exit during an audit outage: \(took)")
        try lock.release()
        let all = ["audit-before"] + ids
        let audited = try await harness.expectNothingCommittedPastUnaudited(all)
        #expect(audited == ["audit-before"], "nothing was audited while the lock was held")
        try await harness.startWorker("w2", extra: settings)
        try await harness.expectAnswered(all)
    }
}

extension WorkerHarness {
    /// Sends SIGTERM and expects exit status 0 within `bound`; returns how long it took.
    func terminate(_ name: String, within bound: Duration) async throws -> Duration {
        let signalled = ContinuousClock.now
        signal(name, SIGTERM)
        #expect(try await waitForExit(name, timeout: 60) == 0)
        let took = ContinuousClock.now - signalled
        #expect(took < bound, "exited after \(took): \(log(name).suffix(3000))")
        return took
    }

    /// The commit rule, checked from the broker's side: every request at an offset below the
    /// group's committed offset of the (single) request partition has its audit row. `ids`
    /// are the requests in the order they were sent. Returns the audited ones.
    @discardableResult
    func expectNothingCommittedPastUnaudited(_ ids: [String]) async throws -> Set<String> {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: "\(prefix)-group", sessionTimeout: .seconds(6)))
        let committed = try await consumer.committedOffsets(for: [KafkaTopicPartition(topic: requestsTopic, partition: 0)])[0].offset
        try await consumer.close()
        let audited = try auditDatabase().auditedRequestIDs(among: ids)
        if committed > 0 {
            let unaudited = ids.prefix(Int(committed)).filter { !audited.contains($0) }
            #expect(unaudited.isEmpty, "committed \(committed) past unaudited \(unaudited.prefix(5))")
        }
        return audited
    }

    /// Every one of `ids` is answered and audited exactly once.
    func expectAnswered(_ ids: [String], timeout: Double = 240) async throws {
        let replies = WorkerHarness.objects(try await read(repliesTopic, timeout: timeout) {
            Set(WorkerHarness.objects($0).compactMap { $0["request_id"] as? String }).isSuperset(of: ids)
        })
        #expect(Set(replies.compactMap { $0["request_id"] as? String }).isSuperset(of: ids))
        let audit = try await auditDatabase(rows: ids.count, timeout: 120)
        #expect(try audit.count() == ids.count)
        #expect(try audit.auditedRequestIDs(among: ids).count == ids.count)
    }
}
