import Foundation
import Inference
import KafkaClient
import Knowledge
import Testing
@testable import Worker

/// The escalation decision on a real knowledge base file: every part triggered on purpose,
/// with the model's answer scripted so that only the decision is under test.
@Suite("Grounded answer pipeline: each escalation part (unit, real SQLite)")
struct GroundingPipelineTests {
    static let entries = [
        KnowledgeEntry(id: "limit", title: "Online banking transfer limits",
                       text: "The daily transfer limit for online banking is 50,000 yuan per account.", questions: ["What is the daily transfer limit?"]),
        KnowledgeEntry(id: "hours", title: "Branch opening hours",
                       text: "Branches are open 9:00 to 17:00 Monday to Friday. On Saturdays they open 9:00 to 12:00."),
    ]

    static func pipeline(mode: String = "generative") throws -> AnswerPipeline {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-grounding-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let base = try KnowledgeBase(path: directory.appendingPathComponent("knowledge.sqlite").path)
        try base.importEntries(entries)
        var settings = SluiceConfiguration.KnowledgeSettings()
        settings.answerMode = mode
        return AnswerPipeline(knowledge: base, settings: settings, policy: EscalationPolicy(), ungroundedTemplate: "{prompt}",
                              backend: ScriptedBackend(confidences: [:]))
    }

    static func completion(_ text: String, confidence: Double = 0.95) -> Completion {
        Completion(text: text, tokens: [1, 2], confidence: confidence, minTokenProbability: confidence, promptTokens: 10,
                   finishReason: .stopString, timeToFirstToken: 0)
    }

    static func decide(_ question: String, answer: String?, confidence: Double = 0.95, mode: String = "generative") throws -> AnswerDecision {
        let pipeline = try pipeline(mode: mode)
        let request = SchedulingTests.request(question)
        let plan = try pipeline.plan(request)
        return pipeline.decide(request, plan: plan, completion: answer.map { completion($0, confidence: confidence) })
    }

    @Test("a grounded, confident answer goes out, with its passages and the knowledge version")
    func grounded() throws {
        let decision = try Self.decide("What is the daily transfer limit for online banking?", answer: "The daily transfer limit for online banking is 50,000 yuan.")
        #expect(decision.reasons.isEmpty && !decision.escalate, "\(decision)")
        #expect(decision.passageIDs.first == "limit" && decision.knowledgeVersion == KnowledgeBase.version(of: Self.entries))
        #expect(decision.confidence > 0.7 && decision.parts.support == 1)
    }

    @Test("no_knowledge: nothing above the retrieval threshold; the model is not asked")
    func noKnowledge() throws {
        let pipeline = try Self.pipeline()
        let request = SchedulingTests.request("Who won the football match yesterday?")
        let plan = try pipeline.plan(request)
        #expect(!plan.needsModel && plan.retrieval?.passages.isEmpty == true)
        let decision = pipeline.decide(request, plan: plan, completion: nil)
        #expect(decision.reasons == ["no_knowledge"] && decision.confidence == 0 && decision.text == pipeline.settings.handoffText)
    }

    @Test("ungrounded_claim: a number the passages do not state escalates, whatever the model's confidence")
    func ungroundedClaim() throws {
        let decision = try Self.decide("What is the daily transfer limit for online banking?", answer: "The daily transfer limit is 100,000 yuan.", confidence: 0.99)
        #expect(decision.reasons.contains("ungrounded_claim") && decision.parts.unsupportedClaims == ["100,000"])
        #expect(decision.confidence == 0)
        let phone = try Self.decide("What is the daily transfer limit for online banking?", answer: "Call 1-800-222-8224 for the daily transfer limit.")
        #expect(phone.reasons.contains("ungrounded_claim"))
    }

    @Test("ungrounded: an answer whose content the passages do not support escalates")
    func ungrounded() throws {
        let decision = try Self.decide("What is the daily transfer limit for online banking?", answer: "Yes, you can pay your mortgage early without penalty.")
        #expect(decision.reasons.contains("ungrounded") && (decision.parts.support ?? 1) < 0.6)
        let empty = try Self.decide("What is the daily transfer limit for online banking?", answer: "")
        #expect(empty.reasons.contains("ungrounded"))
    }

    @Test("low_confidence: a supported answer the model is unsure of escalates")
    func lowConfidence() throws {
        let decision = try Self.decide("What is the daily transfer limit for online banking?",
                                       answer: "The daily transfer limit for online banking is 50,000 yuan.", confidence: 0.2)
        #expect(decision.reasons == ["low_confidence"] && decision.confidence < 0.7)
    }

    @Test("rules hold whatever the grounding: human requested, complaint, fraud come first")
    func rules() throws {
        let decision = try Self.decide("I want a human agent: what is the daily transfer limit for online banking?",
                                       answer: "The daily transfer limit for online banking is 50,000 yuan.")
        #expect(decision.reason == "human_requested")
    }

    @Test("extractive: the choices are the passages' sentences; the pick combines the model's scores with retrieval")
    func extractive() throws {
        let pipeline = try Self.pipeline(mode: "extractive")
        let request = SchedulingTests.request("When are branches open on Saturdays?")
        let plan = try pipeline.plan(request)
        #expect(plan.choices.map(\.text) == [
            "Branches are open 9:00 to 17:00 Monday to Friday.", "On Saturdays they open 9:00 to 12:00.", Self.entries[1].text,
        ])
        #expect(plan.choices.allSatisfy { $0.tokens.last == Int32(("\n" as Unicode.Scalar).value) })
        var completion = Self.completion(plan.choices[0].text)
        completion.choice = 0
        completion.choiceScores = [-2.0, -0.1, -0.5]
        let decision = pipeline.decide(request, plan: plan, completion: completion)
        #expect(decision.text == "On Saturdays they open 9:00 to 12:00.", "the best combined score wins")
        #expect(abs((decision.parts.generation ?? 0) - exp(-0.1)) < 1e-9 && decision.parts.support == 1)
        #expect(decision.parts.selection == 1, "one passage retrieved: it is the one quoted")
    }
}
