import Foundation

/// One labelled case of an eval set (JSONL, one a line): `question` (or `messages`), and
/// `expect` = `{"contains": ["…"]}` — an automated answer must contain every string — or
/// `{"escalate": true}` — the case must go to a human. Optional `id` and `lang`.
public struct EvalCase: Sendable, Equatable, Codable {
    public struct Expectation: Sendable, Equatable, Codable {
        public var contains: [String]?
        public var escalate: Bool?

        public init(contains: [String]? = nil, escalate: Bool? = nil) {
            self.contains = contains
            self.escalate = escalate
        }
    }

    public struct Message: Sendable, Equatable, Codable {
        public var role: String
        public var content: String
    }

    public var id: String?
    public var question: String
    public var messages: [Message]?
    public var lang: String?
    public var expect: Expectation

    public init(id: String? = nil, question: String, lang: String? = nil, expect: Expectation) {
        self.id = id
        self.question = question
        self.lang = lang
        self.expect = expect
    }

    /// Must the answer go to a human?
    public var mustEscalate: Bool { expect.escalate == true }

    /// Parses an eval set, naming the line of the first bad case.
    public static func parseJSONL(_ text: String) throws(KnowledgeError) -> [EvalCase] {
        var cases: [EvalCase] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let parsed: EvalCase
            do {
                parsed = try JSONDecoder().decode(EvalCase.self, from: Data(trimmed.utf8))
            } catch {
                throw KnowledgeError(.invalidInput, "eval set line \(index + 1): \(error)")
            }
            let contains = parsed.expect.contains ?? []
            guard parsed.mustEscalate != !contains.isEmpty else {
                throw KnowledgeError(.invalidInput, "eval set line \(index + 1): expect needs either a non-empty contains or escalate: true")
            }
            cases.append(parsed)
        }
        guard !cases.isEmpty else { throw KnowledgeError(.invalidInput, "the eval set has no cases") }
        return cases
    }
}

/// What the pipeline did with one case.
public struct EvalResult: Sendable, Equatable, Codable {
    public var id: String?
    public var question: String
    public var answer: String
    public var escalate: Bool
    public var reasons: [String]
    public var confidence: Double
    public var passages: [String]
    public var latencyMs: Double
    /// Answerable case: the answer contains every expected string (whether or not escalated).
    /// Must-escalate case: false (no answer is right).
    public var answerRight: Bool
    /// The case ended as it should: answerable → right and automated; must-escalate → escalated.
    public var outcomeRight: Bool
    public var mustEscalate: Bool
    /// The parts the decision was built from (e.g. retrieval, generation, support).
    public var parts: [String: Double]

    enum CodingKeys: String, CodingKey {
        case id, question, answer, escalate, reasons, confidence, passages, parts
        case latencyMs = "latency_ms", answerRight = "answer_right", outcomeRight = "outcome_right", mustEscalate = "must_escalate"
    }

    public init(case evalCase: EvalCase, answer: String, escalate: Bool, reasons: [String], confidence: Double, passages: [String],
                latencyMs: Double, parts: [String: Double] = [:]) {
        id = evalCase.id
        self.parts = parts
        question = evalCase.question
        self.answer = answer
        self.escalate = escalate
        self.reasons = reasons
        self.confidence = confidence
        self.passages = passages
        self.latencyMs = latencyMs
        mustEscalate = evalCase.mustEscalate
        let folded = Self.fold(answer)
        answerRight = !evalCase.mustEscalate && (evalCase.expect.contains ?? []).allSatisfy { folded.contains(Self.fold($0)) }
        outcomeRight = evalCase.mustEscalate ? escalate : (answerRight && !escalate)
    }

    /// Case-insensitive, thousands separators ignored ("50,000" matches "50000").
    static func fold(_ text: String) -> String {
        var folded = text.lowercased()
        if let regex = try? Regex(#"(\d),(\d)"#) {
            while folded.contains(regex) { folded = folded.replacing(regex) { "\($0.output[1].substring ?? "")\($0.output[2].substring ?? "")" } }
        }
        return folded
    }
}

/// The figures of one eval run.
public struct EvalSummary: Sendable, Equatable, Codable {
    public var cases: Int
    public var answerable: Int
    public var mustEscalate: Int
    /// Answerable cases answered without escalation, over answerable cases.
    public var automationRate: Double
    /// Right answers among automated ones (every case not escalated, must-escalate ones included).
    public var accuracy: Double
    /// Answerable cases answered right and not escalated, over answerable cases (the target).
    public var answeredRight: Double
    /// Must-escalate cases escalated, over must-escalate cases.
    public var escalationRecall: Double
    public var wrongAutomated: Int
    public var reasons: [String: Int]
    public var latencyMsP50: Double
    public var latencyMsP95: Double
    public var latencyMsMean: Double
    /// What other confidence thresholds would have done on this set (rules and the other
    /// reasons held fixed): answerable cases automated right, and wrong automated answers.
    public var thresholdSweep: [ThresholdPoint]

    public struct ThresholdPoint: Sendable, Equatable, Codable {
        public var threshold: Double
        public var answeredRight: Int
        public var wrongAutomated: Int

        enum CodingKeys: String, CodingKey {
            case threshold
            case answeredRight = "answered_right", wrongAutomated = "wrong_automated"
        }
    }

    enum CodingKeys: String, CodingKey {
        case cases, answerable, reasons
        case thresholdSweep = "threshold_sweep"
        case mustEscalate = "must_escalate", automationRate = "automation_rate", accuracy, answeredRight = "answered_right"
        case escalationRecall = "escalation_recall", wrongAutomated = "wrong_automated"
        case latencyMsP50 = "latency_ms_p50", latencyMsP95 = "latency_ms_p95", latencyMsMean = "latency_ms_mean"
    }

    public init(_ results: [EvalResult]) {
        cases = results.count
        let answerableResults = results.filter { !$0.mustEscalate }
        let escalateResults = results.filter(\.mustEscalate)
        answerable = answerableResults.count
        mustEscalate = escalateResults.count
        let automated = results.filter { !$0.escalate }
        automationRate = Self.share(answerableResults.filter { !$0.escalate }.count, answerable)
        accuracy = automated.isEmpty ? 1 : Self.share(automated.filter(\.answerRight).count, automated.count)
        answeredRight = Self.share(answerableResults.filter(\.outcomeRight).count, answerable)
        escalationRecall = escalateResults.isEmpty ? 1 : Self.share(escalateResults.filter(\.escalate).count, mustEscalate)
        wrongAutomated = automated.filter { !$0.answerRight }.count
        var counts: [String: Int] = [:]
        for result in results { for reason in result.reasons { counts[reason, default: 0] += 1 } }
        reasons = counts
        let latencies = results.map(\.latencyMs).sorted()
        latencyMsP50 = Self.percentile(latencies, 0.50)
        latencyMsP95 = Self.percentile(latencies, 0.95)
        latencyMsMean = latencies.isEmpty ? 0 : latencies.reduce(0, +) / Double(latencies.count)
        thresholdSweep = stride(from: 0.5, through: 0.901, by: 0.05).map { threshold in
            let automated = results.filter { result in
                !result.reasons.contains { $0 != "low_confidence" } && result.confidence >= threshold
            }
            return ThresholdPoint(threshold: (threshold * 100).rounded() / 100,
                                  answeredRight: automated.filter { !$0.mustEscalate && $0.answerRight }.count,
                                  wrongAutomated: automated.filter { !$0.answerRight }.count)
        }
    }

    static func share(_ part: Int, _ whole: Int) -> Double { whole == 0 ? 0 : Double(part) / Double(whole) }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((p * Double(sorted.count)).rounded(.up))  // nearest-rank
        return sorted[min(sorted.count, max(1, rank)) - 1]
    }
}

/// The file `--json` writes and `--baseline` reads.
public struct EvalReportFile: Sendable, Codable {
    public var summary: EvalSummary
    public var knowledgeVersion: String
    public var configuration: [String: String]
    public var cases: [EvalResult]

    enum CodingKeys: String, CodingKey {
        case summary, cases, configuration
        case knowledgeVersion = "knowledge_version"
    }

    public init(summary: EvalSummary, knowledgeVersion: String, configuration: [String: String], cases: [EvalResult]) {
        self.summary = summary
        self.knowledgeVersion = knowledgeVersion
        self.configuration = configuration
        self.cases = cases
    }
}

/// The rollout gate: a drop in accuracy or automation of more than `maxDrop` (absolute)
/// against the baseline, or any must-escalate case answered, fails.
public enum EvalGate {
    public static func failures(_ current: EvalSummary, baseline: EvalSummary?, maxDrop: Double) -> [String] {
        var failures: [String] = []
        let answered = current.mustEscalate - Int((current.escalationRecall * Double(current.mustEscalate)).rounded())
        if answered > 0 { failures.append("\(answered) must-escalate case(s) were answered without escalation") }
        if let baseline {
            if baseline.accuracy - current.accuracy > maxDrop {
                failures.append(String(format: "accuracy dropped from %.3f to %.3f (more than %.3f)", baseline.accuracy, current.accuracy, maxDrop))
            }
            if baseline.automationRate - current.automationRate > maxDrop {
                failures.append(String(format: "automation dropped from %.3f to %.3f (more than %.3f)", baseline.automationRate, current.automationRate, maxDrop))
            }
        }
        return failures
    }
}
