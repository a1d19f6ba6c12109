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
        let signalled = ContinuousClock.now
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1", timeout: 30) == 0)
        let took = ContinuousClock.now - signalled
        #expect(took < .seconds(3 + 5), "exited after \(took): \(harness.log("w1").suffix(3000))")
        let phases = harness.log("w1").split(separator: "\n").first { $0.contains("shutdown phases") }
        #expect(phases != nil, "the orderly stop ran to its end")
        print("SIGTERM to exit: \(took); \(phases ?? "")")  // the figure the lifecycle note reports
        #expect(harness.log("w1").contains("requests handed back unanswered"), "\(harness.log("w1"))")

        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: harness.client, groupID: "\(harness.prefix)-group", sessionTimeout: .seconds(6)))
        let committed = try await consumer.committedOffsets(for: [KafkaTopicPartition(topic: harness.requestsTopic, partition: 0)])[0].offset
        try await consumer.close()
        let all = ["short-0"] + ids
        let audited = try harness.auditDatabase().auditedRequestIDs(among: all)
        #expect(audited.count < all.count, "long sequences were cut, not finished")
        if committed > 0 { #expect(all.prefix(Int(committed)).allSatisfy { audited.contains($0) }, "committed \(committed) past unaudited work") }

        try await harness.startWorker("w2", extra: settings)
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, timeout: 400) {
            Set(WorkerHarness.objects($0).compactMap { $0["request_id"] as? String }).isSuperset(of: all)
        })
        #expect(Set(replies.compactMap { $0["request_id"] as? String }) == Set(all))
        let audit = try await harness.auditDatabase(rows: all.count, timeout: 120)
        #expect(try audit.count() == all.count)
    }
}
