import AuditLog
import Foundation
import KafkaClient
import Testing

/// The worker with a knowledge base, on the real broker and the real model: answers quote the
/// approved text and say which passages they used; an out-of-knowledge question goes to a
/// human; a re-import is picked up by the running worker.
@Suite("Grounded answers through a worker (real broker, real model)", .serialized)
struct GroundedWorkerTests {
    static func object(_ message: KafkaConsumerMessage) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any])
    }

    @Test("grounded answers carry the knowledge version and passages; no knowledge escalates; a re-import is used without a restart")
    func groundedAndReloaded() async throws {
        let harness = try await WorkerHarness()
        defer { harness.stopAll() }
        let hotline = "What is the customer service hotline number?"
        try await harness.startWorker("w1")
        try await harness.send([
            (key: "g-1", value: WorkerHarness.request("g-1", prompt: hotline), headers: []),
            (key: "g-2", value: WorkerHarness.request("g-2", prompt: "What will the weather be in Paris tomorrow?"), headers: []),
        ])
        let first = Dictionary(uniqueKeysWithValues: try await harness.read(harness.repliesTopic, count: 2).map {
            let object = try Self.object($0)
            return (try #require(object["request_id"] as? String), object)
        })
        let answered = try #require(first["g-1"])
        let knowledge = try #require(answered["knowledge"] as? [String: Any])
        let version = try #require(knowledge["version"] as? String)
        #expect(version.hasPrefix("kb-") && version != "kb-empty")
        #expect((knowledge["passages"] as? [String])?.first == "customer-hotline")
        #expect((answered["text"] as? String)?.contains("95588") == true, "\(answered)")
        #expect(!((answered["escalation_reasons"] as? [String]) ?? []).contains("no_knowledge"))
        let parts = try #require(answered["decision"] as? [String: Any])
        #expect((parts["retrieval"] as? Double ?? 0) > 0.35 && parts["generation"] is Double && parts["selection"] is Double)

        let unknown = try #require(first["g-2"])
        #expect(unknown["escalate"] as? Bool == true && unknown["escalation_reason"] as? String == "no_knowledge")
        #expect(unknown["confidence"] as? Double == 0)
        #expect(((unknown["knowledge"] as? [String: Any])?["passages"] as? [String]) == [])
        let escalation = try Self.object(try #require(try await harness.read(harness.escalationsTopic, count: 1).first))
        #expect(escalation["request_id"] as? String == "g-2" && escalation["reason"] as? String == "no_knowledge")

        // The bank changes its hotline; the running worker answers from the new import.
        let newVersion = try harness.importChangedHotline()
        #expect(newVersion != version)
        try await harness.send([(key: "g-3", value: WorkerHarness.request("g-3", prompt: hotline), headers: [])])
        let all = try await harness.read(harness.repliesTopic, count: 3)
        let reloaded = try #require(try all.map(Self.object).first { $0["request_id"] as? String == "g-3" })
        #expect((reloaded["knowledge"] as? [String: Any])?["version"] as? String == newVersion)
        #expect((reloaded["text"] as? String)?.contains("96666") == true, "\(reloaded)")

        let audit = try await harness.auditDatabase(rows: 3)
        let before = try #require(try audit.record(requestID: "g-1"))
        let after = try #require(try audit.record(requestID: "g-3"))
        #expect(before.knowledgeVersion == version && after.knowledgeVersion == newVersion)
        #expect(before.knowledgePassages?.contains("customer-hotline") == true)
        #expect(try audit.record(requestID: "g-2")?.escalationReasons == #"["no_knowledge"]"#)
        #expect(before.decisionParts?.contains("\"retrieval\"") == true && before.confidenceMethod == "grounded_v1")
        #expect(try audit.verify().isIntact)
    }
}
