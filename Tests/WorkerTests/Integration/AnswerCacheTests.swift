import AuditLog
import Foundation
import KafkaClient
import Testing
@testable import Worker

/// The answer cache through a worker, on the real broker and the real model.
@Suite("Answer cache (real broker, real model)", .serialized)
struct AnswerCacheTests {
    static let hotline = "What is the customer service hotline number?"

    @Test("a repeated question is answered from the cache and audited with the reused request id; sampled-without-seed and escalated answers are never reused; a knowledge re-import misses")
    func hitsAndMisses() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_CACHE_ENABLED": "true"])
        let cache = try AnswerCache(path: harness.directory.appendingPathComponent("answer-cache.sqlite").path, maxEntries: 10, maxAge: 3600)
        var replies: [String: [String: Any]] = [:]
        func ask(_ items: [(String, String, [String: Any])]) async throws {
            try await harness.send(items.map { (key: $0.0, value: WorkerHarness.request($0.0, prompt: $0.1, extra: $0.2), headers: []) })
            let wanted = Set(items.map(\.0))
            for object in WorkerHarness.objects(try await harness.read(harness.repliesTopic, timeout: 240) { messages in
                wanted.isSubset(of: Set(WorkerHarness.objects(messages).compactMap { $0["request_id"] as? String }))
            }) {
                if let id = object["request_id"] as? String { replies[id] = object }
            }
        }
        /// Waits until the cache holds `count` entries (an answer is stored after its audit row).
        func cached(_ count: Int) async throws {
            try await withDeadlineThrowing(60, "\(count) cached answers") {
                while try cache.count() < count { try await Task.sleep(for: .milliseconds(50)) }
            }
        }

        try await ask([("c-1", Self.hotline, [:])])
        let first = try #require(replies["c-1"])
        #expect(first["escalate"] as? Bool == false && first["cache"] == nil, "\(first)")
        try await cached(1)

        // The same question, spaced and punctuated differently (full-width ？): reused.
        try await ask([("c-2", "What is the  customer service hotline number？ ", [:])])
        let hit = try #require(replies["c-2"])
        #expect((hit["cache"] as? [String: Any])?["request_id"] as? String == "c-1", "\(hit)")
        #expect(hit["text"] as? String == first["text"] as? String && hit["confidence"] as? Double == first["confidence"] as? Double)
        #expect(hit["escalate"] as? Bool == false && (hit["usage"] as? [String: Any])?["completion_tokens"] as? Int == 0)

        // Sampled without a seed: never reused, never stored. Escalated by a rule: never stored.
        let human = "I want to talk to a human about the customer service hotline number"
        try await ask([("c-3", Self.hotline, ["temperature": 0.7]), ("c-4", human, [:])])
        try await ask([("c-5", Self.hotline, ["temperature": 0.7]), ("c-6", human, [:])])
        for id in ["c-3", "c-5"] { #expect(try #require(replies[id])["cache"] == nil, "\(id) was served from the cache") }
        for id in ["c-4", "c-6"] {
            let reply = try #require(replies[id])
            #expect(reply["cache"] == nil && reply["escalate"] as? Bool == true && reply["escalation_reason"] as? String == "human_requested", "\(reply)")
        }
        #expect(try cache.count() == 1, "only the automated greedy answer is stored")

        // A knowledge re-import changes the version: the old answer is not reused.
        _ = try harness.importChangedHotline()
        try await ask([("c-7", Self.hotline, [:])])
        let reimported = try #require(replies["c-7"])
        #expect(reimported["cache"] == nil && (reimported["text"] as? String)?.contains("96666") == true, "\(reimported)")
        try await cached(2)
        try await ask([("c-8", Self.hotline, [:])])
        #expect((replies["c-8"]?["cache"] as? [String: Any])?["request_id"] as? String == "c-7")

        // An answer found wrong is cleared by its request id (`sluice cache clear`); the running
        // worker asks the model again.
        let cachePath = harness.directory.appendingPathComponent("answer-cache.sqlite").path
        let (statsStatus, statsOutput) = try await harness.runSluice(["cache", "stats", "--db", cachePath], withBrokers: false)
        #expect(statsStatus == 0 && String(decoding: statsOutput, as: UTF8.self).contains("2 entries"), "\(String(decoding: statsOutput, as: UTF8.self))")
        let (clearStatus, clearOutput) = try await harness.runSluice(["cache", "clear", "--db", cachePath, "--request-id", "c-7"], withBrokers: false)
        #expect(clearStatus == 0 && String(decoding: clearOutput, as: UTF8.self).contains("removed 1 entry"))
        try await ask([("c-9", Self.hotline, [:])])
        #expect(replies["c-9"]?["cache"] == nil, "a cleared answer is not reused")

        let audit = try await harness.auditDatabase(rows: 9)
        let reused = try #require(try audit.record(requestID: "c-2"))
        #expect(reused.cachedFrom == "c-1" && reused.status == .ok && reused.route == .auto && reused.completionTokens == 0)
        #expect(reused.knowledgeVersion == (try audit.record(requestID: "c-1"))?.knowledgeVersion)
        #expect(try audit.record(requestID: "c-8")?.cachedFrom == "c-7")
        for id in ["c-1", "c-3", "c-4", "c-5", "c-6", "c-7", "c-9"] { #expect(try audit.record(requestID: id)?.cachedFrom == nil, "\(id)") }
        #expect(try audit.verify().isIntact)
    }
}

extension AnswerCacheTests {
    @Test("identical questions arriving together run the model once: those queued behind the first take its answer, each with its own reply and audit row")
    func queuedRepeatsShareTheAnswer() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        // One sequence at a time, and other questions between the first and its repeats: the
        // repeats are consumed (and miss the cache) at once, then wait their turn behind the others.
        try await harness.startWorker("w1", extra: ["SLUICE_CACHE_ENABLED": "true", "SLUICE_WORKER_MAX_BATCH_SIZE": "1"])
        let ids = (1...6).map { "same-\($0)" }
        let others = ["Please tell me the customer service hotline number", "Which number is the customer service hotline?",
                      "customer service hotline number?"]
        let otherIDs = others.indices.map { "other-\($0)" }
        // One key: one partition, consumed in this order.
        let items = [(ids[0], Self.hotline)] + Array(zip(otherIDs, others)) + ids.dropFirst().map { ($0, Self.hotline) }
        try await harness.send(items.map { (key: "k", value: WorkerHarness.request($0.0, prompt: $0.1), headers: []) })
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, timeout: 240) { messages in
            Set(ids + otherIDs).isSubset(of: Set(WorkerHarness.objects(messages).compactMap { $0["request_id"] as? String }))
        })
        let byID = Dictionary(replies.compactMap { object in (object["request_id"] as? String).map { ($0, object) } }, uniquingKeysWith: { first, _ in first })
        let audit = try await harness.auditDatabase(rows: items.count)
        let records = try ids.map { try #require(try audit.record(requestID: $0)) }
        let computed = records.filter { $0.cachedFrom == nil }
        try #require(computed.map(\.requestID) == [ids[0]], "the model answered \(computed.map(\.requestID)), not only the first")
        let leader = computed[0]
        for record in records where record.requestID != leader.requestID {
            #expect(record.cachedFrom == leader.requestID && record.status == .ok && record.route == .auto && record.completionTokens == 0, "\(record)")
            let reply = try #require(byID[record.requestID])
            #expect((reply["cache"] as? [String: Any])?["request_id"] as? String == leader.requestID, "\(reply)")
            #expect(reply["text"] as? String == byID[leader.requestID]?["text"] as? String)
        }
        #expect(try audit.verify().isIntact)
    }
}

@Suite("Answer cache (unit)")
struct AnswerCacheUnitTests {
    func request(_ prompt: String, temperature: Float = 0, seed: UInt64? = nil) -> InferenceRequest {
        var request = SchedulingTests.request(prompt)
        request.temperature = temperature
        if let seed {
            request.seed = seed
            request.seedGiven = true
        }
        return request
    }

    let context = AnswerCache.Context(modelSHA256: "aa", templateVersion: "t1", answerMode: "extractive", knowledgeVersion: "kb-1")

    @Test("the key folds white space and full-width forms, and changes with the model, knowledge, template, mode and sampling")
    func keys() throws {
        let key = try #require(AnswerCache.key(request("What is the fee?"), context: context))
        #expect(AnswerCache.key(request("  What is  the fee？"), context: context) == key)
        #expect(AnswerCache.key(request("what is the fee?"), context: context) != key, "case is kept: the model sees it")
        var other = context
        other.modelSHA256 = "bb"
        #expect(AnswerCache.key(request("What is the fee?"), context: other) != key)
        other = context
        other.knowledgeVersion = "kb-2"
        #expect(AnswerCache.key(request("What is the fee?"), context: other) != key)
        other = context
        other.templateVersion = "t2"
        #expect(AnswerCache.key(request("What is the fee?"), context: other) != key)
        other = context
        other.answerMode = "generative"
        #expect(AnswerCache.key(request("What is the fee?"), context: other) != key)
        var longer = request("What is the fee?")
        longer.maxTokens = 99
        #expect(AnswerCache.key(longer, context: context) != key)
        #expect(AnswerCache.key(request("What is the fee?", temperature: 0.7), context: context) == nil, "sampled without a seed: not cacheable")
        let seeded = AnswerCache.key(request("What is the fee?", temperature: 0.7, seed: 5), context: context)
        #expect(seeded != nil && seeded != key && seeded != AnswerCache.key(request("What is the fee?", temperature: 0.7, seed: 6), context: context))
    }

    @Test("entries older than the maximum age are not reused; the store keeps at most max_entries, oldest removed first")
    func bounds() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cache-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cache = try AnswerCache(path: path, maxEntries: 3, maxAge: 60)
        let entry = AnswerCache.Entry(requestID: "r", text: "t", confidence: 0.9, parts: DecisionParts(), knowledgeVersion: "kb-1", passageIDs: ["p"],
                                      promptTokens: 1, completionTokens: 1)
        let start = Date()
        try cache.store(entry, for: "old", now: start)
        #expect(try cache.lookup("old", now: start.addingTimeInterval(59)) == entry)
        #expect(try cache.lookup("old", now: start.addingTimeInterval(61)) == nil)
        for index in 0..<300 { try cache.store(entry, for: "k\(index)", now: start.addingTimeInterval(Double(index) / 10)) }
        // Pruned every 256 stores: at most max_entries plus what arrived since.
        #expect(try cache.count() < 300)
        #expect(try cache.lookup("k299", now: start.addingTimeInterval(30)) != nil)
        #expect(try cache.lookup("old", now: start.addingTimeInterval(30)) == nil, "the oldest went first")
    }

    @Test("an answer found wrong can be cleared by its request id: the keys reusing it go, the others stay; stats count per answer")
    func clearByRequest() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cache-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cache = try AnswerCache(path: path, maxEntries: 100, maxAge: 3600)
        func entry(_ id: String) -> AnswerCache.Entry {
            AnswerCache.Entry(requestID: id, text: "t", confidence: 0.9, parts: DecisionParts(), knowledgeVersion: nil, passageIDs: [],
                              promptTokens: 1, completionTokens: 1)
        }
        try cache.store(entry("wrong"), for: "a")
        try cache.store(entry("wrong"), for: "b")
        try cache.store(entry("right"), for: "c")
        let stats = try cache.stats()
        #expect(stats.entries == 3 && stats.answers.first?.requestID == "wrong" && stats.answers.first?.keys == 2)
        #expect(try cache.clear(requestID: "wrong") == 2)
        #expect(try cache.lookup("a") == nil && cache.lookup("b") == nil && cache.lookup("c") == entry("right"))
        #expect(try cache.clear() == 1 && cache.count() == 0)
    }
}
