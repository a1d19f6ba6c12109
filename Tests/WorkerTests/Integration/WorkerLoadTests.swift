import AuditLog
import Foundation
import KafkaClient
import Testing

/// Scale-out, priorities, backpressure and a broker outage.
@Suite("Integration: the worker under load", .serialized)
struct WorkerLoadTests {
    @Test("two workers in one group share a 6-partition topic; every request is answered once")
    func scaleOut() async throws {
        let harness = try await WorkerHarness(partitions: 6)
        defer { harness.stopAll() }
        let settings = ["SLUICE_WORKER_DEFAULT_MAX_TOKENS": "2"]
        try await harness.startWorker("one", extra: settings)
        try await harness.startWorker("two", extra: settings)
        try await harness.waitForLog("one", containing: "partitions revoked")  // the group rebalanced to share
        let ids = (0..<60).map { "scale-\($0)" }
        try await harness.send(ids.map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 60))
        var counts: [String: Int] = [:]
        for reply in replies { counts[reply["request_id"] as? String ?? "?", default: 0] += 1 }
        #expect(counts == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
        #expect(Set(replies.compactMap { $0["worker"] as? String }) == ["one", "two"])
        #expect(try await harness.auditDatabase(rows: 60).count() == 60)
    }

    @Test("with a backlog, interactive requests finish before batch requests submitted earlier")
    func priorities() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_MAX_BATCH_SIZE": "1", "SLUICE_WORKER_DEFAULT_MAX_TOKENS": "4", "SLUICE_WORKER_AGING_MS": "600000"])
        let batch = (0..<12).map { "batch-\($0)" }
        let interactive = (0..<3).map { "interactive-\($0)" }
        try await harness.send(
            batch.map { (key: "k", value: WorkerHarness.request($0, extra: ["priority": "batch"]), headers: []) }
                + interactive.map { (key: "k", value: WorkerHarness.request($0, extra: ["priority": "interactive"]), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 15)
        let rows = try await harness.auditDatabase(rows: 15).query(AuditFilter())
        let order = rows.sorted { $0.seq < $1.seq }.map(\.requestID)
        let lastInteractive = try #require(interactive.compactMap { order.firstIndex(of: $0) }.max())
        let batchAfter = batch.filter { (order.firstIndex(of: $0) ?? -1) > lastInteractive }
        // The first batch request may already run when the interactive ones arrive; most wait.
        #expect(batchAfter.count >= 8, "audit order: \(order)")
    }

    @Test("a burst of 5,000 requests pauses partitions at the high-water mark, holds at most 64 requests at any time (peak over the burst) and loses nothing")
    func backpressure() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 3)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: [
            "SLUICE_WORKER_QUEUE_CAPACITY": "64", "SLUICE_WORKER_QUEUE_HIGH_WATER": "32", "SLUICE_WORKER_QUEUE_LOW_WATER": "8",
            "SLUICE_WORKER_MAX_BATCH_SIZE": "16",
        ])
        let ids = (0..<5_000).map { "burst-\($0)" }
        try await harness.send(ids.map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        let replies = try await harness.read(harness.repliesTopic, timeout: 300) { $0.count >= 5_000 }
        #expect(Set(WorkerHarness.objects(replies).compactMap { $0["request_id"] as? String }).count == 5_000)
        let peakRSS = try #require(harness.processes("w1").flatMap { Self.peakResidentKB(pid: $0.processIdentifier) })
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1") == 0)
        let log = harness.log("w1")
        #expect(log.contains("partitions paused"))
        #expect(log.contains("partitions resumed"))
        // Over the whole burst, never more held than the high-water mark plus what one poll
        // returns before the pause takes effect — not the 5,000 of the backlog.
        let phases = try #require(log.split(separator: "\n").first { $0.contains("shutdown phases") })
        let peak = try #require(phases.range(of: "peak_in_flight=").flatMap { Int(phases[$0.upperBound...].prefix { $0.isNumber }) })
        #expect(peak >= 32 && peak <= 64, "peak held requests \(peak)")
        #expect(peakRSS < 400_000, "peak RSS \(peakRSS) KB")
        #expect(try await harness.auditDatabase(rows: 5_000).count() == 5_000)
    }

    /// VmHWM (peak resident set) of a process, in KB.
    static func peakResidentKB(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    @Test("the broker stopped (SIGSTOP) for 10 s mid-load: nothing lost, the worker recovers without restart")
    func brokerOutage() async throws {
        let broker = try await PrivateBroker()
        defer { broker.kill() }
        let harness = try await WorkerHarness(model: "echo", partitions: 2, brokers: broker.address)
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        let ids = (0..<400).map { "outage-\($0)" }
        try await harness.send(ids.prefix(200).map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 50)
        try await broker.stop()
        try await Task.sleep(for: .seconds(10))  // the outage itself, not a synchronisation
        broker.resume()
        try await harness.send(ids.suffix(200).map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        let replies = try await harness.read(harness.repliesTopic, timeout: 240) { messages in
            Set(WorkerHarness.objects(messages).compactMap { $0["request_id"] as? String }).count == 400
        }
        #expect(Set(WorkerHarness.objects(replies).compactMap { $0["request_id"] as? String }) == Set(ids))
        #expect(harness.isRunning("w1"))
        #expect(try await harness.auditDatabase(rows: 400).count() == 400)
    }
}

@Suite("Integration: sluice load and send", .serialized)
struct LoadGeneratorTests {
    @Test("sluice send posts one request and prints its reply, matched by correlation id")
    func send() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        let (status, data) = try await harness.runSluice(["send", "--prompt", "年费是多少？", "--request-id", "send-1", "--timeout", "60", "--json"])
        #expect(status == 0)
        let reply = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(reply["request_id"] as? String == "send-1")
        #expect(reply["status"] as? String == "ok")
        #expect(reply["text"] as? String == "年费是多少？")
    }

    @Test("sluice load sends at a rate with a burst and a repeat ratio, collects every reply, counts cache hits and writes a report and chart")
    func loadGenerator() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_CACHE_ENABLED": "true"])
        let report = harness.directory.appendingPathComponent("load.json").path
        let (status, output) = try await harness.runSluice(["load", "--rate", "100", "--duration", "2", "--burst", "100@1", "--repeat", "0.8",
                                                      "--timeout", "60", "--report", report])
        let text = String(decoding: output, as: UTF8.self)
        #expect(status == 0, "\(text)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
        #expect(object["sent"] as? Int == 300)
        #expect(object["answered"] as? Int == 300)
        #expect(object["lost"] as? Int == 0)
        // 80 % repeat earlier questions; all but those sent before their original was stored hit.
        let hits = try #require(object["cache_hits"] as? Int)
        #expect(hits > 100 && hits <= 240, "cache hits \(hits) of 300")
        let timeline = try #require(object["timeline"] as? [String: Any])
        #expect((timeline["sent_per_s"] as? [Int])?.reduce(0, +) == 300)
        let svg = try String(contentsOfFile: harness.directory.appendingPathComponent("load.svg").path, encoding: .utf8)
        #expect(svg.contains("<polyline"))
        #expect(text.contains("lost 0"))
    }
}
