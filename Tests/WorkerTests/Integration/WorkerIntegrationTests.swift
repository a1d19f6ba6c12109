import AuditLog
import Foundation
import KafkaClient
import Testing

/// Real broker, real SQLite file, real model (unless a test says echo), real `sluice run`
/// processes. Suites run serially: each worker uses both cores.
@Suite("Integration: the worker end to end", .serialized)
struct WorkerIntegrationTests {
    @Test("50 requests → 50 replies with matching request and correlation ids, 50 audit rows, chain intact")
    func endToEnd() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        let ids = (0..<50).map { "e2e-\($0)" }
        try await harness.send(ids.map { id in
            (key: "c-\(id)", value: WorkerHarness.request(id, extra: ["max_tokens": 4, "metadata": ["ticket": id]]),
             headers: [KafkaHeader(name: "correlation-id", string: "corr-\(id)")])
        })
        let replies = try await harness.read(harness.repliesTopic, count: 50)
        var seen: [String: Int] = [:]
        for reply in replies {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.value)) as? [String: Any])
            let id = try #require(object["request_id"] as? String)
            seen[id, default: 0] += 1
            #expect(reply.headers.last(named: "correlation-id")?.stringValue == "corr-\(id)")
            #expect(reply.headers.last(named: "kafka_correlationId")?.stringValue == "corr-\(id)")
            #expect(object["status"] as? String == "ok")
            #expect((object["metadata"] as? [String: Any])?["ticket"] as? String == id)
            #expect((object["model"] as? [String: Any])?["quantization"] as? String == "Q4_K_M")
            // Grounded in the gold-card entry: the approved text, quoted by the model.
            #expect((object["usage"] as? [String: Any])?["completion_tokens"] as? Int ?? 0 > 0)
            #expect(((object["knowledge"] as? [String: Any])?["passages"] as? [String])?.first == "gold-card-fee")
            #expect((object["text"] as? String)?.contains("300 yuan") == true)
            let confidence = try #require(object["confidence"] as? Double)
            #expect(object["escalate"] as? Bool == (confidence < 0.7))
        }
        #expect(seen == Dictionary(uniqueKeysWithValues: ids.map { ($0, 1) }))
        let audit = try await harness.auditDatabase(rows: 50)
        #expect(try audit.count() == 50)
        let report = try audit.verify()
        #expect(report.isIntact, "\(String(describing: report.failure))")
        let row = try #require(try audit.record(requestID: "e2e-7"))
        #expect(row.customerPseudonym != nil && row.customerPseudonym != "cust-e2e-7")
        #expect(row.modelSHA256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
    }

    @Test("bad input goes to the dead-letter topic with its reason, gets an audit row and an error reply when addressable; good requests flow")
    func badInput() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_MAX_PROMPT_BYTES": "200", "SLUICE_WORKER_REPLY_TOPICS": "\(harness.prefix).other.*"])
        let bad: [(String, [UInt8], [KafkaHeader], String)] = [
            ("malformed", Array("{not json".utf8), [KafkaHeader(name: "correlation-id", string: "bad-1")], "malformed_json"),
            ("missing", Array(#"{"prompt":"hi"}"#.utf8), [KafkaHeader(name: "correlation-id", string: "bad-2")], "missing_field"),
            ("utf8", [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D], [KafkaHeader(name: "correlation-id", string: "bad-3")], "invalid_utf8"),
            ("oversize", WorkerHarness.request("bad-4", prompt: String(repeating: "long ", count: 100)), [], "prompt_too_large"),
            ("reply", WorkerHarness.request("bad-5", extra: ["reply_to": "\(harness.prefix).other.absent"]), [], "unknown_reply_topic"),
            ("policy", WorkerHarness.request("bad-7", extra: ["reply_to": "no.such.topic"]), [], "reply_topic_not_allowed"),
            ("tokens", WorkerHarness.request("bad-6", extra: ["max_tokens": 100_000]), [], "invalid_field"),
        ]
        var traffic: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = []
        for (index, item) in bad.enumerated() {
            traffic.append((key: "k", value: item.1, headers: item.2))
            traffic.append((key: "k", value: WorkerHarness.request("good-\(index)", extra: ["max_tokens": 2]), headers: []))
        }
        try await harness.send(traffic)
        let dead = try await harness.read(harness.deadLettersTopic, count: bad.count)
        #expect(Set(dead.compactMap { $0.headers.last(named: "sluice-error-code")?.stringValue }) == Set(bad.map(\.3)))
        for message in dead {
            let original = try #require(bad.first { $0.1 == message.value }, "the dead letter is the original record")
            #expect(message.headers.last(named: "sluice-original-topic")?.stringValue == harness.requestsTopic)
            #expect(original.2.allSatisfy { message.headers.contains($0) })
        }
        // Every good request is answered, and every addressable bad one gets a rejection.
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: bad.count * 2))
        let answered = Set(replies.filter { $0["status"] as? String == "ok" }.compactMap { $0["request_id"] as? String })
        #expect(answered == Set((0..<bad.count).map { "good-\($0)" }))
        let rejected = replies.filter { $0["status"] as? String == "rejected" }
        #expect(rejected.count == bad.count, "an unusable reply topic gets its error reply on the default topic")
        #expect(Set(rejected.compactMap { ($0["error"] as? [String: Any])?["code"] as? String }) == Set(bad.map(\.3)))
        let audit = try await harness.auditDatabase(rows: bad.count * 2)
        #expect(try audit.count() == bad.count * 2)
        var filter = AuditFilter()
        filter.status = .rejected
        #expect(try audit.query(filter).count == bad.count)
        #expect(try audit.verify().isIntact)
        // The same process served all of it, and still stops cleanly: no crash, no restart.
        #expect(harness.isRunning("w1"), "the worker exited: \(harness.log("w1").suffix(2000))")
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1") == 0)
    }

    @Test("a request for a human agent is escalated and lands on the escalations topic with the transcript")
    func escalation() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        try await harness.send([(key: "c", value: WorkerHarness.request("human-1", prompt: "我要转人工客服", extra: ["max_tokens": 3]), headers: [])])
        let escalation = WorkerHarness.objects(try await harness.read(harness.escalationsTopic, count: 1))[0]
        #expect(escalation["request_id"] as? String == "human-1")
        #expect(escalation["reason"] as? String == "human_requested")
        let transcript = try #require(escalation["transcript"] as? [[String: Any]])
        #expect(transcript.first?["content"] as? String == "我要转人工客服")
        let reply = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 1))[0]
        #expect(reply["escalate"] as? Bool == true)
        let row = try #require(try await harness.auditDatabase(rows: 1).record(requestID: "human-1"))
        #expect(row.route == .escalated && row.escalationReason == "human_requested")
    }

    @Test("expired requests are answered expired and never inferred")
    func deadlines() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        let past = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-60))
        try await harness.send([
            (key: "a", value: WorkerHarness.request("late-1", extra: ["deadline": past]), headers: []),
            (key: "a", value: WorkerHarness.request("on-time-1", extra: ["max_tokens": 2]), headers: []),
        ])
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 2))
        let late = try #require(replies.first { $0["request_id"] as? String == "late-1" })
        #expect(late["status"] as? String == "expired")
        #expect(late["text"] is NSNull)
        let row = try #require(try await harness.auditDatabase(rows: 2).record(requestID: "late-1"))
        #expect(row.status == .expired && row.completionTokens == nil && row.startedAt == nil)
    }

    @Test("SIGTERM during load: exit 0 within the grace period; committed offsets never pass unfinished work; a restart answers the rest once")
    func gracefulShutdown() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_MAX_BATCH_SIZE": "4", "SLUICE_WORKER_DEFAULT_MAX_TOKENS": "3"])
        let ids = (0..<200).map { "term-\($0)" }
        try await harness.send(ids.map { (key: "k", value: WorkerHarness.request($0), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 20)
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1", timeout: 30) == 0)
        // The group's committed offset never passes a request without an audit row.
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: harness.client, groupID: "\(harness.prefix)-group", sessionTimeout: .seconds(6)))
        let committed = try await consumer.committedOffsets(for: [KafkaTopicPartition(topic: harness.requestsTopic, partition: 0)])[0].offset
        try await consumer.close()
        let audit = try harness.auditDatabase()
        let audited = try audit.auditedRequestIDs(among: ids)
        #expect(audited.count < 200, "the worker was stopped mid-load")
        #expect(committed >= 20, "finished work was committed at shutdown")
        if committed > 0 {
            #expect(ids.prefix(Int(committed)).allSatisfy { audited.contains($0) }, "committed \(committed) past unaudited work")
        }
        try await harness.startWorker("w2")
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, timeout: 240) { Set(WorkerHarness.objects($0).compactMap { $0["request_id"] as? String }).count == 200 })
        #expect(Set(replies.compactMap { $0["request_id"] as? String }) == Set(ids))
        _ = try await harness.auditDatabase(rows: 200)
        #expect(try audit.count() == 200)
        #expect(try audit.verify().isIntact)
    }

    @Test("SIGKILL mid-load and restart: every request answered, one audit row each, audited requests not inferred again")
    func crashAndRestart() async throws {
        let harness = try await WorkerHarness(partitions: 2)
        defer { harness.stopAll() }
        let settings = ["SLUICE_WORKER_MAX_BATCH_SIZE": "4", "SLUICE_WORKER_DEFAULT_MAX_TOKENS": "3"]
        try await harness.startWorker("a", extra: settings)
        try await harness.startWorker("b", extra: settings, waitForAssignment: false)
        let ids = (0..<200).map { "kill-\($0)" }
        try await harness.send(ids.map { (key: $0, value: WorkerHarness.request($0), headers: []) })
        _ = try await harness.read(harness.repliesTopic, count: 30)
        harness.signal("a", SIGKILL)
        let auditedBeforeKill = try harness.auditDatabase().auditedRequestIDs(among: ids)
        #expect(auditedBeforeKill.count < 200, "killed mid-load")
        try await harness.startWorker("a2", extra: settings, waitForAssignment: false)
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, timeout: 240) { messages in
            Set(WorkerHarness.objects(messages).compactMap { $0["request_id"] as? String }).count == 200
        })
        var counts: [String: Int] = [:]
        for reply in replies { counts[reply["request_id"] as? String ?? "?", default: 0] += 1 }
        let audit = try await harness.auditDatabase(rows: 200)
        #expect(try audit.count() == 200)
        #expect(try audit.verify().isIntact)
        #expect(try audit.auditedRequestIDs(among: ids).count == 200)
        // At-least-once replies; but nothing audited before the kill was answered twice.
        for id in auditedBeforeKill { #expect(counts[id] == 1, "\(id) answered \(counts[id] ?? 0) times") }
    }
}

@Suite("Integration: metrics and health endpoints", .serialized)
struct WorkerEndpointTests {
    static func get(_ url: String) async throws -> (Int, String) {
        // curl is bounded and waited for off the cooperative pool: the server under test may be in this process.
        try await offThePool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
    }

    @Test("/healthz, /readyz and /metrics: request counters match the traffic and promtool accepts the output")
    func endpoints() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        let port = try freeLocalPort()
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_METRICS_PORT": String(port)])
        #expect(try await Self.get("http://127.0.0.1:\(port)/healthz").0 == 200)
        #expect(try await Self.get("http://127.0.0.1:\(port)/readyz").0 == 200)
        try await harness.send((0..<7).map { (key: "k", value: WorkerHarness.request("m-\($0)"), headers: []) }
            + [(key: "k", value: Array("{oops".utf8), headers: []),
               (key: "k", value: WorkerHarness.request("m-human", prompt: "I want to speak to a human agent"), headers: [])])
        _ = try await harness.read(harness.deadLettersTopic, count: 1)
        _ = try await harness.read(harness.repliesTopic, count: 9)
        // The reply precedes the counter update; wait for the audit rows, written just before it.
        let (status, body) = try await withDeadlineThrowing(30, "the counters") {
            while true {
                let (status, body) = try await Self.get("http://127.0.0.1:\(port)/metrics")
                // The lag gauge appears with its first measurement (every 5 s).
                if body.contains("sluice_requests_total{status=\"ok\"} 8"), body.contains("sluice_requests_total{status=\"rejected\"} 1"),
                   body.contains("sluice_consumer_lag_messages{") {
                    return (status, body)
                }
                try await Task.sleep(for: .milliseconds(100))  // scrape polling, as Prometheus does
            }
        }
        #expect(status == 200)
        for name in ["sluice_queue_time_seconds", "sluice_end_to_end_latency_seconds", "sluice_batch_size_sequences", "sluice_requests_in_flight",
                     "sluice_consumer_lag_messages", "sluice_model_info", "sluice_audit_write_seconds", "sluice_generated_tokens_total",
                     "sluice_inter_token_latency_seconds", "sluice_time_to_first_token_seconds", "sluice_escalations_total{reason=\"human_requested\"} 1", "sluice_ready"] {
            #expect(body.contains(name), "\(name) missing")
        }
        let file = harness.directory.appendingPathComponent("metrics.txt")
        try body.write(to: file, atomically: true, encoding: .utf8)
        let promtool = try Ops.run("/usr/bin/promtool", ["check", "metrics"], input: file)
        #expect(promtool.status == 0, "\(promtool.output)")
    }
}
