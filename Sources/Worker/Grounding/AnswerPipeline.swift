import Foundation
import Inference
import Knowledge

/// What the model is asked for one request: the grounded prompt, the approved texts it may
/// answer with (extractive mode), and what retrieval saw.
public struct AnswerPlan: Sendable {
    /// The text the model reads.
    public var modelInput: String
    public var promptTokens: [Int32]
    /// Extractive mode: the candidate answers (empty otherwise, or when nothing was retrieved).
    public var choices: [GenerationRequest.Choice]
    /// For each choice, the retrieved passage (index) it quotes.
    public var choicePassages: [Int] = []
    /// Generation stops before these (generative mode).
    public var stopStrings: [String]?
    /// nil when answers are not grounded (`knowledge.db` empty).
    public var retrieval: Retrieval?
    /// False when there is nothing to ask the model: no passage was retrieved in extractive mode.
    public var needsModel: Bool
}

/// Each part of the escalation decision, as the reply and the audit row carry it.
public struct DecisionParts: Sendable, Equatable, Codable {
    /// The best passage's share of the question's terms (0: nothing retrieved).
    public var retrieval: Double?
    /// The model's confidence in its answer: exp(mean log-probability) of the answer's tokens.
    public var generation: Double?
    /// The share of the answer's content terms found in the passages.
    public var support: Double?
    /// Extractive: the probability that the answer's passage is the one to quote — the
    /// choices' scores (mean log-probability + log retrieval share) summed per passage and
    /// normalised.
    public var selection: Double?
    /// Facts (numbers, amounts, phones, dates, URLs, e-mails) absent from the passages.
    public var unsupportedClaims: [String]?

    enum CodingKeys: String, CodingKey {
        case retrieval, generation, support, selection
        case unsupportedClaims = "unsupported_claims"
    }
}

/// The escalation decision for one answer.
public struct AnswerDecision: Sendable, Equatable {
    public var text: String
    /// Calibrated, in [0, 1] (see ``AnswerPipeline/calibratedConfidence(_:)``).
    public var confidence: Double
    /// Every reason that holds, rules first; empty when the answer may go out unreviewed.
    public var reasons: [String]
    public var parts: DecisionParts
    /// The knowledge version and the ids of the passages the answer was grounded in.
    public var knowledgeVersion: String?
    public var passageIDs: [String]

    public var escalate: Bool { !reasons.isEmpty }
    /// The first reason (the reply's `escalation_reason`).
    public var reason: String? { reasons.first }
}

/// Retrieval → prompt → (batched generation, done by the scheduler) → escalation decision.
/// The worker and `sluice eval` both answer through this type, so what is measured is what
/// is served.
public struct AnswerPipeline: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        case extractive, generative
        /// The seeds' rule, kept as `sluice eval`'s baseline: the whole knowledge base in the
        /// prompt, free generation, escalate only when exp(mean log-prob) < the threshold.
        case wholeKnowledgeBase = "whole_knowledge_base"
    }

    public let knowledge: KnowledgeBase?
    public let settings: SluiceConfiguration.KnowledgeSettings
    public let policy: EscalationPolicy
    /// Free (ungrounded) prompting: `worker.prompt_template`.
    public let ungroundedTemplate: String
    let tokenize: @Sendable (String) -> [Int32]
    let tokenizeContinuation: @Sendable (String) -> [Int32]

    public var mode: Mode { Mode(rawValue: settings.answerMode) ?? .extractive }

    /// Candidates scored per request at most, and their longest length in tokens.
    public static let maxChoices = 12
    public static let maxChoiceTokens = 160

    public init(knowledge: KnowledgeBase?, settings: SluiceConfiguration.KnowledgeSettings, policy: EscalationPolicy,
                ungroundedTemplate: String, backend: any GenerationBackend) {
        self.knowledge = knowledge
        self.settings = settings
        self.policy = policy
        self.ungroundedTemplate = ungroundedTemplate
        nonisolated(unsafe) let backend = backend  // tokenizing only reads the model's vocabulary
        tokenize = { backend.tokenize($0) }
        tokenizeContinuation = { backend.tokenizeContinuation($0) }
    }

    /// The pipeline a worker with `configuration` answers through: its escalation rules and
    /// threshold, and the knowledge base at `knowledge.db` (none for the echo model or an
    /// empty path).
    public init(configuration: SluiceConfiguration, backend: any GenerationBackend) throws {
        let worker = configuration.worker
        let rules = worker.escalationRules.isEmpty ? EscalationPolicy.defaultRules : worker.escalationRules.sorted { $0.key < $1.key }.map {
            EscalationPolicy.Rule(reason: $0.key, phrases: $0.value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        let policy = EscalationPolicy(confidenceThreshold: worker.escalationThreshold, rules: rules)
        let knowledge = configuration.knowledge.db.isEmpty || backend is EchoBackend ? nil : try KnowledgeBase(path: configuration.knowledge.db)
        self.init(knowledge: knowledge, settings: configuration.knowledge, policy: policy, ungroundedTemplate: worker.promptTemplate, backend: backend)
        echo = backend is EchoBackend
    }

    private var echo = false

    /// What the audit row records as `prompt_template_version`: a hash of everything that
    /// shapes the model's input and the decision (template, mode, retrieval settings).
    public var templateVersion: String {
        if echo { return "echo" }
        guard knowledge != nil else { return "fnv1a-" + String(RequestCodec.stableSeed(ungroundedTemplate), radix: 16) }
        let k = settings
        let shape = [k.answerMode, k.template, "\(k.passages)", "\(k.minCoverage)", "\(k.minSupport)"].joined(separator: "\u{1F}")
        return "fnv1a-" + String(RequestCodec.stableSeed(shape), radix: 16)
    }

    /// The customer's latest message and the earlier turns (at most four), from `messages`
    /// when the request has them.
    static func question(of request: InferenceRequest) -> (question: String, history: [String], previous: String?) {
        guard let messages = request.messages, let last = messages.lastIndex(where: { $0.role != "assistant" && $0.role != "system" }) else {
            return (request.prompt, [], nil)
        }
        let earlier = messages[..<last].filter { $0.role != "system" }
        let history = earlier.suffix(4).map { "\($0.role == "assistant" ? "Answer" : "Customer"): \($0.content)" }
        let previous = earlier.last { $0.role != "assistant" }?.content
        return (messages[last].content, Array(history), previous)
    }

    public func plan(_ request: InferenceRequest) throws(KnowledgeError) -> AnswerPlan {
        guard let knowledge else {
            // The echo model answers with exactly what it is given: the customer's prompt.
            let input = echo ? request.prompt : ungroundedTemplate.replacingOccurrences(of: "{prompt}", with: request.prompt)
            return AnswerPlan(modelInput: input, promptTokens: tokenize(input), choices: [], stopStrings: nil, retrieval: nil, needsModel: true)
        }
        let (question, history, previous) = Self.question(of: request)
        var retrieval = try knowledge.retrieve(question, limit: settings.passages, minimumCoverage: settings.minCoverage)
        if retrieval.passages.isEmpty, let previous {
            // A follow-up ("and on Saturdays?") is looked up together with the customer's turn before it.
            retrieval = try knowledge.retrieve(previous + "\n" + question, limit: settings.passages, minimumCoverage: settings.minCoverage)
        }
        let passages = retrieval.passages.map(\.entry)
        let input = GroundedPrompt(template: settings.template).render(question: question, passages: passages, history: history)
        switch mode {
        case .extractive:
            // Bounded work per request: at most `maxChoices` candidates of at most
            // `maxChoiceTokens` tokens each (a longer sentence or passage is not offered).
            let candidates = GroundedPrompt.candidates(passages)
                .map { (candidate: $0, tokens: tokenizeContinuation(" " + $0.text + "\n")) }
                .filter { $0.tokens.count <= Self.maxChoiceTokens }
                .prefix(Self.maxChoices)
            let choices = candidates.map { GenerationRequest.Choice(tokens: $0.tokens, text: $0.candidate.text) }
            var plan = AnswerPlan(modelInput: input, promptTokens: tokenize(input), choices: choices, stopStrings: nil,
                                  retrieval: retrieval, needsModel: !choices.isEmpty)
            plan.choicePassages = candidates.map(\.candidate.passage)
            return plan
        case .generative:
            return AnswerPlan(modelInput: input, promptTokens: tokenize(input), choices: [], stopStrings: ["\n"],
                              retrieval: retrieval, needsModel: !passages.isEmpty)
        case .wholeKnowledgeBase:
            let all = try knowledge.entries()
            let input = GroundedPrompt(template: settings.template).render(question: question, passages: all, history: history)
            let everything = Retrieval(version: retrieval.version, passages: all.map { RetrievedPassage(entry: $0, coverage: 1, rank: 0) })
            return AnswerPlan(modelInput: input, promptTokens: tokenize(input), choices: [], stopStrings: ["\n"],
                              retrieval: everything, needsModel: true)
        }
    }

    /// The plan when the knowledge base cannot be read: nothing to ground in, so the request is
    /// escalated (`knowledge_unavailable`) without the model rather than held.
    public func unavailablePlan() -> AnswerPlan {
        AnswerPlan(modelInput: "", promptTokens: [], choices: [], stopStrings: nil,
                   retrieval: Retrieval(version: Self.unavailableVersion, passages: []), needsModel: false)
    }

    static let unavailableVersion = "unavailable"

    /// The decision on `completion` (nil when the model was not asked: nothing retrieved).
    public func decide(_ request: InferenceRequest, plan: AnswerPlan, completion: Completion?) -> AnswerDecision {
        let rules = policy.ruleReasons(prompt: request.prompt)
        guard let retrieval = plan.retrieval else {
            // Ungrounded prompting: only the model's own confidence and the rules.
            let confidence = completion?.confidence ?? 0
            let low = confidence < policy.confidenceThreshold ? ["low_confidence"] : []
            return AnswerDecision(text: completion?.text ?? "", confidence: confidence, reasons: rules + low,
                                  parts: DecisionParts(generation: completion?.confidence), knowledgeVersion: nil, passageIDs: [])
        }
        let ids = retrieval.passages.map(\.entry.id)
        guard let completion, !retrieval.passages.isEmpty else {
            let reason = retrieval.version == Self.unavailableVersion ? "knowledge_unavailable" : "no_knowledge"
            return AnswerDecision(text: settings.handoffText, confidence: 0, reasons: rules + [reason],
                                  parts: DecisionParts(retrieval: 0), knowledgeVersion: retrieval.version, passageIDs: ids)
        }
        var text = completion.text.trimmingCharacters(in: .whitespacesAndNewlines)
        var generation = completion.confidence
        var selection: Double?
        if let pick = Self.select(completion, plan: plan) {
            text = plan.choices[pick.choice].text
            generation = pick.generation
            selection = pick.selection
        }
        if mode == .wholeKnowledgeBase {
            let low = completion.confidence < policy.confidenceThreshold ? ["low_confidence"] : []
            return AnswerDecision(text: text, confidence: completion.confidence, reasons: rules + low,
                                  parts: DecisionParts(generation: completion.confidence), knowledgeVersion: retrieval.version, passageIDs: [])
        }
        let report = GroundingCheck.check(answer: text, passages: retrieval.passages.map(\.entry.text))
        let support = text.isEmpty ? 0 : report.support
        var parts = DecisionParts(
            retrieval: retrieval.topCoverage, generation: generation, support: support, selection: selection,
            unsupportedClaims: report.unsupportedClaims.map(\.text))
        var reasons = rules
        if !report.unsupportedClaims.isEmpty { reasons.append("ungrounded_claim") }
        if support < settings.minSupport { reasons.append("ungrounded") }
        let confidence = Self.calibratedConfidence(parts)
        if confidence < policy.confidenceThreshold { reasons.append("low_confidence") }
        if report.unsupportedClaims.isEmpty { parts.unsupportedClaims = nil }
        return AnswerDecision(text: text, confidence: confidence, reasons: reasons, parts: parts,
                              knowledgeVersion: retrieval.version, passageIDs: ids)
    }

    /// Extractive answers: the choice to quote. Each choice scores its mean log-probability
    /// per token plus the log of its passage's share of retrieval coverage (how well the
    /// passage matched the question, against the other retrieved ones) — retrieval and the
    /// model both vote, as in retrieval-augmented generation's marginal over passages.
    static func select(_ completion: Completion, plan: AnswerPlan) -> (choice: Int, generation: Double, selection: Double)? {
        let scores = completion.choiceScores
        guard !scores.isEmpty, scores.count == plan.choices.count, plan.choicePassages.count == scores.count,
              let passages = plan.retrieval?.passages, !passages.isEmpty else { return nil }
        let total = passages.reduce(0) { $0 + $1.coverage }
        let combined = scores.indices.map { scores[$0] + log(max(passages[plan.choicePassages[$0]].coverage, 1e-9) / max(total, 1e-9)) }
        guard let best = combined.indices.max(by: { combined[$0] < combined[$1] || (combined[$0] == combined[$1] && $0 > $1) }) else { return nil }
        let top = combined[best]
        var perPassage = [Double](repeating: 0, count: passages.count)
        for index in combined.indices { perPassage[plan.choicePassages[index]] += exp(combined[index] - top) }
        let selection = perPassage[plan.choicePassages[best]] / perPassage.reduce(0, +)
        return (best, exp(scores[best]), selection)
    }

    /// The one number an operator thresholds: 0 when an unsupported fact was stated or nothing
    /// was retrieved; otherwise the geometric mean of the parts measured for this answer —
    /// retrieval coverage r, generation confidence g, and either passage selection q (an
    /// extractive answer, whose support is 1 by construction) or support s (a generated one):
    /// (r · g · q)^(1/3) or (r · g · s)^(1/3). Each part is a probability-like share in [0, 1],
    /// so a weak part pulls the number down and no strong part can hide it.
    public static func calibratedConfidence(_ parts: DecisionParts) -> Double {
        guard let retrieval = parts.retrieval, retrieval > 0, parts.unsupportedClaims?.isEmpty ?? true else { return 0 }
        let third = parts.selection ?? parts.support ?? 0
        return pow(retrieval * (parts.generation ?? 0) * third, 1.0 / 3.0)
    }
}
