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

    @Test("a burst of 5,000 requests while the audit log stalls: partitions pause at the high-water mark once the intake's hold expires, resume when it clears, at most 64 requests held at any time (peak over the burst), nothing lost")
    func backpressure() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 3)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: [
            "SLUICE_WORKER_QUEUE_CAPACITY": "64", "SLUICE_WORKER_QUEUE_HIGH_WATER": "32", "SLUICE_WORKER_QUEUE_LOW_WATER": "8",
            "SLUICE_WORKER_MAX_BATCH_SIZE": "16", "SLUICE_WORKER_INTAKE_HOLD_MS": "100",
        ])
        // The audit log's write lock, taken from outside, stalls every request before its
        // commit: the held requests cannot fall, the hold expires and the high water pauses.
        let lock = try SQLiteWriteLock(path: harness.auditPath)
        let ids = (0..<5_000).map { "burst-\($0)" }
        try await harness.send(ids.map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        try await harness.waitForLog("w1", containing: "partitions paused")
        try lock.release()
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

    @Test("SIGKILL during a burst with pipelined publishing, audit writes blocked: no committed offset without its reply and audit row; a restart answers the rest")
    func pipelinedCommitRule() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 3)
        defer { harness.stopAll() }
        let settings = ["SLUICE_WORKER_COMMIT_INTERVAL_MS": "20"]
        try await harness.startWorker("w1", extra: settings)
        let count = 6_000
        let ids = (0..<count).map { "pipe-\($0)" }
        // The first third is answered, audited and committed with the pipeline running freely.
        try await harness.send(ids.prefix(2_000).map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
        // Then the audit log's write lock is taken from outside: replies keep going out (up to the
        // in-flight limit) while no row can be written — and so no offset may be committed.
        let lock = try SQLiteWriteLock(path: harness.auditPath)
        try await harness.send(ids.dropFirst(2_000).map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        _ = try await harness.read(harness.repliesTopic, timeout: 120) { $0.count >= 2_300 }
        let partitions = (0..<3).map { KafkaTopicPartition(topic: harness.requestsTopic, partition: $0) }
        let probe = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: harness.client, groupID: "\(harness.prefix)-group", sessionTimeout: .seconds(6)))
        // Fifty commit intervals for an offset to move past unaudited work, if anything lets it.
        let watchUntil = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < watchUntil {
            _ = try await probe.committedOffsets(for: partitions)
            try await Task.sleep(for: .milliseconds(100))  // watching that nothing happens: there is no event to await
        }
        harness.signal("w1", SIGKILL)
        _ = try await harness.waitForExit("w1")
        try lock.release()

        // What the killed worker left: committed offsets, audit rows, replies.
        let committed = Dictionary(uniqueKeysWithValues: try await probe.committedOffsets(for: partitions).map { ($0.partition, $0.offset) })
        try await probe.close()
        let requests = try await harness.read(harness.requestsTopic, count: count)
        let committedIDs = requests.filter { $0.offset < (committed[$0.partition] ?? -1) }.compactMap { WorkerHarness.objects([$0]).first?["request_id"] as? String }
        #expect(committedIDs.count >= 2_000 && committedIDs.count < count, "killed mid-burst after commits: \(committedIDs.count) of \(count) committed")
        let audited = try harness.auditDatabase().auditedRequestIDs(among: ids)
        let unaudited = committedIDs.filter { !audited.contains($0) }
        #expect(unaudited.isEmpty, "committed without an audit row: \(unaudited.count), e.g. \(unaudited.prefix(5))")
        // Every committed request's reply is on the topic (nothing runs now that could add one).
        let committedReplies = ReplyTally(watching: Set(committedIDs))
        _ = try await harness.read(harness.repliesTopic, timeout: 60) { committedReplies.add($0.last!) }

        // The audit row follows the reply: once every request has its row, every reply is out.
        try await harness.startWorker("w2", extra: settings, waitForAssignment: false)
        let database = try await harness.auditDatabase(rows: count, timeout: 240)
        #expect(try database.count() == count)
        #expect(try database.verify().isIntact)
        #expect(try database.auditedRequestIDs(among: ids).count == count)
        // Read to the end of the topic, so that a second reply of an audited request would be seen.
        let ends = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: harness.client, groupID: "\(harness.prefix)-ends", sessionTimeout: .seconds(6)))
        var total: Int64 = 0
        for partition in 0..<Int32(3) { total += try await ends.watermarks(for: KafkaTopicPartition(topic: harness.repliesTopic, partition: partition)).high }
        try await ends.close()
        let all = ReplyTally(watching: Set(ids), records: Int(total))
        _ = try await harness.read(harness.repliesTopic, timeout: 60) { all.add($0.last!) }
        // At least once: a reply published but not yet audited is answered again; an audited one never.
        for id in audited { #expect(all.answers[id] == 1, "\(id) answered \(all.answers[id] ?? 0) times") }
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
        // Repeats pick any earlier question alike: about 60 distinct, none asked very often.
        let uniform = try #require(object["questions"] as? [String: Int])
        #expect((40...90).contains(uniform["distinct"] ?? 0) && (uniform["most_asked"] ?? 0) < 30, "\(uniform)")

        // Zipf's law (skew 1.5): the first questions asked take most of the repeats.
        let skewed = harness.directory.appendingPathComponent("skewed.json").path
        let (skewedStatus, skewedOutput) = try await harness.runSluice(["load", "--rate", "100", "--duration", "2", "--repeat", "0.8",
                                                                        "--repeat-skew", "1.5", "--timeout", "60", "--report", skewed])
        #expect(skewedStatus == 0, "\(String(decoding: skewedOutput, as: UTF8.self))")
        let skewedObject = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: skewed))) as? [String: Any])
        let popular = try #require(skewedObject["questions"] as? [String: Int])
        #expect((popular["most_asked"] ?? 0) >= 40, "the first question takes a large share of 160 repeats: \(popular)")
        #expect(skewedObject["lost"] as? Int == 0)
        let (refused, _) = try await harness.runSluice(["load", "--repeat-skew", "1"])
        #expect(refused == 64, "a skew without a repeat ratio is a usage error")
    }
}

extension LoadGeneratorTests {
    @Test("sluice load --deadline gives every request a deadline: one the worker cannot reach in time is answered expired, none is lost")
    func deadlines() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        let report = harness.directory.appendingPathComponent("load.json").path
        // A millisecond: past before any worker reads the request.
        let (status, output) = try await harness.runSluice(["load", "--rate", "50", "--duration", "1", "--deadline", "0.001",
                                                             "--timeout", "60", "--report", report])
        #expect(status == 0, "\(String(decoding: output, as: UTF8.self))")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
        #expect(object["answered"] as? Int == 50 && object["lost"] as? Int == 0)
        #expect(object["statuses"] as? [String: Int] == ["expired": 50], "\(object["statuses"] ?? "")")
        let (refused, _) = try await harness.runSluice(["load", "--deadline", "0"])
        #expect(refused == 64, "a deadline of 0 s is a usage error")
    }
}

/// Counts replies per request id as a read goes, one record at a time; done once every
/// watched id has been seen.
final class ReplyTally: @unchecked Sendable {  // touched only by one read's loop
    private let watched: Set<String>
    private let records: Int
    private var seen = 0
    private var read = 0
    private(set) var answers: [String: Int] = [:]

    /// `records`: also read at least this many records.
    init(watching ids: Set<String>, records: Int = 0) {
        watched = ids
        self.records = records
    }

    func add(_ message: KafkaConsumerMessage) -> Bool {
        read += 1
        if let id = WorkerHarness.objects([message]).first?["request_id"] as? String {
            answers[id, default: 0] += 1
            if answers[id] == 1, watched.contains(id) { seen += 1 }
        }
        return seen == watched.count && read >= records
    }
}
