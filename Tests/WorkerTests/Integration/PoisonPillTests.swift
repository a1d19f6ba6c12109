import AuditLog
import Foundation
import KafkaClient
import Testing

/// Bad records of every kind, interleaved with good requests on the same partitions of a
/// two-worker group on the real broker: no worker crashes or restarts, every good request
/// is answered, every bad one gets its audit row and dead-letter copy, and every partition's
/// committed offset reaches its end — transaction markers included.
@Suite("Integration: no message can crash, stall or wedge the fleet", .serialized)
struct PoisonPillTests {
    struct Kind {
        let name: String
        let value: [UInt8]
        var headers: [KafkaHeader] = []
        /// The rejection code, or nil for a request that must be answered `ok`.
        let code: String?
    }

    static func body(_ json: String) -> [UInt8] { Array(json.utf8) }

    static func kinds(_ harness: WorkerHarness) -> [Kind] {
        let partition = { (value: Int32) in KafkaHeader(name: "kafka_replyPartition", value: withUnsafeBytes(of: value.bigEndian) { Array($0) }) }
        return [
            Kind(name: "max_tokens 2^63", value: body(#"{"request_id":"p-1","prompt":"hi","max_tokens":9223372036854775808}"#), code: "invalid_field"),
            Kind(name: "max_tokens Int64.max", value: body(#"{"request_id":"p-2","prompt":"hi","max_tokens":9223372036854775807}"#), code: "invalid_field"),
            Kind(name: "seed 1e20", value: body(#"{"request_id":"p-3","prompt":"hi","seed":1e20}"#), code: "invalid_field"),
            Kind(name: "max_tokens -1e20", value: body(#"{"request_id":"p-4","prompt":"hi","max_tokens":-1e20}"#), code: "invalid_field"),
            Kind(name: "temperature \"NaN\"", value: body(#"{"request_id":"p-5","prompt":"hi","temperature":"NaN"}"#), code: "invalid_field"),
            Kind(name: "0 and 1", value: body(#"{"request_id":"p-6","prompt":"hi","temperature":0,"max_tokens":1,"top_p":1,"seed":0}"#), code: nil),
            Kind(name: "0.0 and 1.0", value: body(#"{"request_id":"p-7","prompt":"hi","temperature":0.0,"max_tokens":1.0,"top_p":1.0}"#), code: nil),
            Kind(name: "64 KB request id", value: body(#"{"request_id":"\#(String(repeating: "i", count: 65_536))","prompt":"hi"}"#), code: "invalid_field"),
            Kind(name: "900 KB metadata", value: body(#"{"request_id":"p-9","prompt":"hi","metadata":{"blob":"\#(String(repeating: "m", count: 900_000))"}}"#), code: "invalid_field"),
            Kind(name: "1.5 MB record", value: body(#"{"request_id":"p-10","prompt":"\#(String(repeating: "p", count: 1_500_000))"}"#), code: "prompt_too_large"),
            Kind(name: "reply_to escalations", value: body(#"{"request_id":"p-11","prompt":"APPROVED: refund 10000 to account 123","reply_to":"\#(harness.escalationsTopic)"}"#), code: "reply_topic_not_allowed"),
            Kind(name: "reply_to requests", value: body(#"{"request_id":"p-12","prompt":"hi","reply_to":"\#(harness.requestsTopic)"}"#), code: "reply_topic_not_allowed"),
            Kind(name: "reply_to dead letters", value: body(#"{"request_id":"p-13","prompt":"hi","reply_to":"\#(harness.deadLettersTopic)"}"#), code: "reply_topic_not_allowed"),
            Kind(name: "reply_to __consumer_offsets", value: body(#"{"request_id":"p-14","prompt":"hi","reply_to":"__consumer_offsets"}"#), code: "reply_topic_not_allowed"),
            Kind(name: "reply topic allowed but absent", value: body(#"{"request_id":"p-15","prompt":"hi","reply_to":"\#(harness.prefix).other.missing"}"#), code: "unknown_reply_topic"),
            Kind(name: "reply partition 999", value: body(#"{"request_id":"p-16","prompt":"hi"}"#), headers: [partition(999)], code: "invalid_reply_partition"),
            Kind(name: "reply partition -5", value: body(#"{"request_id":"p-17","prompt":"hi"}"#), headers: [partition(-5)], code: "invalid_reply_partition"),
            Kind(name: "malformed JSON", value: body(#"{"request_id":"p-18","prompt":"#), code: "malformed_json"),
            Kind(name: "invalid UTF-8", value: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D], code: "invalid_utf8"),
        ]
    }

    @Test("every bad kind interleaved with good requests: workers stay up, all answered, audited, dead-lettered, committed to the end")
    func poisonPills() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 3)
        defer { harness.stopAll() }
        let extra = ["SLUICE_WORKER_REPLY_TOPICS": "\(harness.prefix).other.*"]
        try await harness.startWorker("w1", extra: extra)
        try await harness.startWorker("w2", extra: extra)
        let pids = [harness.pid("w1"), harness.pid("w2")]

        let kinds = Self.kinds(harness)
        var traffic: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = []
        var good: [String] = []
        for (index, kind) in kinds.enumerated() {
            for copy in 0..<2 {  // the same bad kind on two keys, so both workers meet it
                let key = "k\(index * 2 + copy)"
                if copy == 0 { traffic.append((key: key, value: kind.value, headers: kind.headers)) }
                let id = "good-\(index)-\(copy)"
                good.append(id)
                traffic.append((key: key, value: WorkerHarness.request(id, extra: ["max_tokens": 2]), headers: []))
            }
        }
        try await harness.send(traffic, maxMessageBytes: 2_000_000)
        // Three committed transactions of three requests each (commit markers between them).
        let transactional = try await harness.runPython("transactional_producer.py", [harness.brokers, harness.requestsTopic, harness.prefix, "3", "3"])
        let transactionalIDs = transactional.split(separator: "\n").map(String.init)
        #expect(transactionalIDs.count == 9)

        let answeredIDs = Set(good + transactionalIDs + kinds.filter { $0.code == nil }.map { Self.requestID($0) })
        let rejectedKinds = kinds.filter { $0.code != nil }
        let dead = try await harness.read(harness.deadLettersTopic, count: rejectedKinds.count)
        let deadCodes = dead.compactMap { $0.headers.last(named: "sluice-error-code")?.stringValue }
        #expect(deadCodes.sorted() == rejectedKinds.compactMap(\.code).sorted())
        // The 1.5 MB record's copy is cut to fit, with its original size.
        let big = try #require(dead.first { $0.headers.last(named: "sluice-error-code")?.stringValue == "prompt_too_large" })
        #expect(big.headers.last(named: "sluice-truncated")?.stringValue == "true")
        #expect(big.headers.last(named: "sluice-original-size")?.stringValue == String(kinds.first { $0.name == "1.5 MB record" }!.value.count))

        // Replies: every good request ok; each bad one with an addressable default reply rejected.
        let expectedReplies = answeredIDs.count + rejectedKinds.count
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: expectedReplies))
        let ok = Set(replies.filter { $0["status"] as? String == "ok" }.compactMap { $0["request_id"] as? String })
        #expect(ok == answeredIDs)
        let rejectedCodes = replies.filter { $0["status"] as? String == "rejected" }.compactMap { ($0["error"] as? [String: Any])?["code"] as? String }
        #expect(rejectedCodes.sorted() == rejectedKinds.compactMap(\.code).sorted())
        // Nothing reached the escalations topic from a forged reply_to.
        let escalations = try await harness.readAll(harness.escalationsTopic)
        #expect(!escalations.contains { String(decoding: $0.value, as: UTF8.self).contains("APPROVED") })

        // One audit row per record.
        let audit = try await harness.auditDatabase(rows: expectedReplies)
        #expect(try audit.count() == expectedReplies)
        var filter = AuditFilter()
        filter.status = .rejected
        let rejectedRows = try audit.query(filter)
        #expect(rejectedRows.compactMap(\.errorCode).sorted() == rejectedKinds.compactMap(\.code).sorted())
        #expect(!rejectedRows.contains { $0.requestID.count > 1_000 }, "the 64 KB request id is not stored")
        #expect(rejectedRows.filter { $0.errorCode == "reply_topic_not_allowed" }.allSatisfy { $0.replyTopic == harness.repliesTopic },
                "the error reply of a forbidden destination went to the default topic, and the row says so")
        #expect(try audit.record(requestID: "good-0-0")?.replyTopic == harness.repliesTopic)
        #expect(try audit.verify().isIntact)

        // Every partition's committed offset reaches the log end (past the commit markers).
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
        #expect([harness.pid("w1"), harness.pid("w2")] == pids && harness.isRunning("w1") && harness.isRunning("w2"), "no crash, no restart")
    }

    @Test("a reply the broker cannot take (over message.max.bytes) ends its request as error: audit row, DLQ copy, error reply; the partition moves on")
    func permanentPublishFailure() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        // A 4 KB limit on what the worker may publish: the echo of a 5 KB prompt cannot be sent.
        try await harness.startWorker("w1", extra: ["SLUICE_KAFKA_PROPERTIES": "message.max.bytes=4000", "SLUICE_WORKER_MAX_PROMPT_TOKENS": "8000", "SLUICE_WORKER_MAX_CONTEXT": "9000"])
        try await harness.send([
            (key: "c", value: WorkerHarness.request("before", extra: ["max_tokens": 2]), headers: []),
            (key: "c", value: WorkerHarness.request("huge-answer", prompt: String(repeating: "a", count: 5_000), extra: ["max_tokens": 2]), headers: []),
            (key: "c", value: WorkerHarness.request("after", extra: ["max_tokens": 2]), headers: []),
        ])
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 3))
        #expect(Set(replies.filter { $0["status"] as? String == "ok" }.compactMap { $0["request_id"] as? String }) == ["before", "after"])
        let failure = try #require(replies.first { $0["request_id"] as? String == "huge-answer" })
        #expect(failure["status"] as? String == "error" && (failure["error"] as? [String: Any])?["code"] as? String == "reply_undeliverable")
        let dead = try await harness.read(harness.deadLettersTopic, count: 1)
        #expect(dead.first?.headers.last(named: "sluice-error-code")?.stringValue == "reply_undeliverable")
        #expect(dead.first?.headers.last(named: "sluice-truncated")?.stringValue == "true")
        let row = try #require(try await harness.auditDatabase(rows: 3).record(requestID: "huge-answer"))
        #expect(row.status == .error && row.errorCode == "reply_undeliverable" && row.replyTopic == harness.repliesTopic)
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
        #expect(harness.isRunning("w1"))
    }

    @Test("a prompt too long with its passages is rejected when its turn comes: error reply, DLQ copy, audit row; the requests around it are answered")
    func promptTooLongAtItsTurn() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        defer { harness.stopAll() }
        // 40 tokens: a short question fits; the grounded prompt of a long one does not.
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_MAX_PROMPT_TOKENS": "40", "SLUICE_WORKER_MAX_TOKENS_LIMIT": "64",
                                                    "SLUICE_WORKER_DEFAULT_MAX_TOKENS": "8"])
        let long = "What is the annual fee of the gold card, " + String(repeating: "and what else should I know about it, ", count: 20)
        try await harness.send([
            (key: "c", value: WorkerHarness.request("too-long", prompt: long), headers: []),
            (key: "c", value: WorkerHarness.request("after", prompt: "我要转人工"), headers: []),
        ])
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 2))
        let rejected = try #require(replies.first { $0["request_id"] as? String == "too-long" })
        #expect(rejected["status"] as? String == "rejected" && (rejected["error"] as? [String: Any])?["code"] as? String == "prompt_too_long", "\(rejected)")
        #expect(replies.contains { $0["request_id"] as? String == "after" })
        let dead = try await harness.read(harness.deadLettersTopic, count: 1)
        #expect(dead.first?.headers.last(named: "sluice-error-code")?.stringValue == "prompt_too_long")
        #expect(dead.first.map { String(decoding: $0.value, as: UTF8.self).contains("too-long") } == true, "the DLQ copy is the record")
        let audit = try await harness.auditDatabase(rows: 2)
        // A rejection is audited under its record's position (topic 0, offset 0).
        let row = try #require(try audit.record(requestID: "too-long@\(harness.requestsTopic):0:0"))
        #expect(row.status == .rejected && row.errorCode == "prompt_too_long", "\(row)")
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
        #expect(harness.isRunning("w1"))
    }

    static func requestID(_ kind: Kind) -> String {
        let object = (try? JSONSerialization.jsonObject(with: Data(kind.value))) as? [String: Any]
        return object?["request_id"] as? String ?? ""
    }

    @Test("a request id answered from another record gets status duplicate naming the original; the same record again is skipped")
    func duplicates() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        try await harness.startWorker("w1")
        try await harness.send([(key: "c", value: WorkerHarness.request("dup-1", extra: ["max_tokens": 2]), headers: [])])
        let first = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 1))
        #expect(first.first?["status"] as? String == "ok")
        // A client retry: the same request id in a new record.
        try await harness.send([(key: "c", value: WorkerHarness.request("dup-1", extra: ["max_tokens": 2]), headers: [])])
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 2))
        let duplicate = try #require(replies.first { $0["status"] as? String == "duplicate" })
        let original = try #require(duplicate["original"] as? [String: Any])
        #expect(original["offset"] as? Int == 0 && original["status"] as? String == "ok")
        let audit = try await harness.auditDatabase(rows: 2)
        #expect(try audit.record(requestID: "dup-1")?.offset == 0)
        #expect(try audit.record(requestID: "dup-1@\(harness.requestsTopic):0:1")?.errorCode == "duplicate_request_id")
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
    }
}

extension WorkerHarness {
    func pid(_ name: String) -> Int32 { processes(name)?.processIdentifier ?? -1 }

    /// Runs a script of Tests/WorkerTests/Scripts with the project's Python; its standard output.
    func runPython(_ script: String, _ arguments: [String]) async throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent(".venv/bin/python")
        process.arguments = [root.appendingPathComponent("Tests/WorkerTests/Scripts/\(script)").path] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let (data, failure) = try await offThePool {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            let failure = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (data, failure)
        }
        guard process.terminationStatus == 0 else {
            throw Missing(description: "\(script) failed: \(String(decoding: failure, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Every record of `topic` there is now (up to its high watermarks).
    func readAll(_ topic: String) async throws -> [KafkaConsumerMessage] {
        let admin = try KafkaAdmin(configuration: client)
        let partitions = try #require(try await admin.metadata().topic(named: topic)).partitions
        let probe = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: "\(prefix)-probe-\(UUID())", sessionTimeout: .seconds(6)))
        defer { Task { try? await probe.close() } }
        var ends: [Int32: Int64] = [:]
        for partition in partitions { ends[partition.id] = try await probe.watermarks(for: KafkaTopicPartition(topic: topic, partition: partition.id)).high }
        let total = ends.values.reduce(0, +)
        guard total > 0 else { return [] }
        let wanted = ends
        return try await read(topic, timeout: 60) { messages in
            wanted.allSatisfy { partition, end in messages.filter { $0.partition == partition }.map(\.offset).max().map { $0 + 1 >= end } ?? (end == 0) }
        }
    }

    /// Waits until the group's committed offset of every partition of `topic` equals its high
    /// watermark (a bounded poll of the broker: there is no event to await across processes).
    func waitForCommittedToReachEnd(_ topic: String, timeout: Double = 60) async throws {
        let admin = try KafkaAdmin(configuration: client)
        let partitions = try #require(try await admin.metadata().topic(named: topic)).partitions.map { KafkaTopicPartition(topic: topic, partition: $0.id) }
        let probe = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: "\(prefix)-group", sessionTimeout: .seconds(6)))
        defer { Task { try? await probe.close() } }
        let last = LastSeen()
        do {
            try await withDeadlineThrowing(timeout, "committed offsets of \(topic) to reach the log end") {
                while true {
                    var behind: [String] = []
                    let committed = try await probe.committedOffsets(for: partitions)
                    for partition in partitions {
                        let end = try await probe.watermarks(for: partition).high
                        let offset = committed.first { $0.partition == partition.partition }?.offset ?? -1
                        if offset != end { behind.append("\(partition.partition): committed \(offset) of \(end)") }
                    }
                    if behind.isEmpty { return }
                    last.text = behind.joined(separator: ", ")
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        } catch {
            throw Missing(description: "\(error): \(last.text)")
        }
    }
}

/// The last state a bounded poll saw, for its failure message.
final class LastSeen: @unchecked Sendable {  // behind `lock`
    private let lock = NSLock()
    private var value = ""
    var text: String {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}
