import Foundation

/// Decides whether an answer goes to a human agent: low confidence, or a rule matching the
/// customer's words (asks for a human, fraud, complaint).
public struct EscalationPolicy: Sendable {
    public struct Rule: Sendable, Equatable {
        /// Recorded as the escalation reason, e.g. `human_requested`.
        public var reason: String
        /// Case-insensitive substrings of the prompt that trigger the rule.
        public var phrases: [String]

        public init(reason: String, phrases: [String]) {
            self.reason = reason
            self.phrases = phrases
        }
    }

    public var confidenceThreshold: Double
    public var rules: [Rule]

    public init(confidenceThreshold: Double = 0.7, rules: [Rule] = EscalationPolicy.defaultRules) {
        self.confidenceThreshold = confidenceThreshold
        self.rules = rules
    }

    public static let defaultRules: [Rule] = [
        Rule(reason: "human_requested", phrases: ["转人工", "人工", "human agent", "real person", "speak to a human", "talk to a human"]),
        Rule(reason: "fraud", phrases: ["fraud", "诈骗", "盗刷", "stolen card", "unauthorized transaction", "unauthorised transaction"]),
        Rule(reason: "complaint", phrases: ["complaint", "complain", "投诉", "ombudsman"]),
    ]

    /// Every rule matching the prompt, in rule order.
    public func ruleReasons(prompt: String) -> [String] {
        let lowered = prompt.lowercased()
        return rules.filter { rule in rule.phrases.contains(where: { lowered.firstRange(of: $0.lowercased()) != nil }) }.map(\.reason)
    }

    /// The reason to escalate, or nil. Rules on the prompt come first (they hold even for a
    /// confident answer); then the confidence threshold.
    public func reason(prompt: String, confidence: Double?) -> String? {
        let lowered = prompt.lowercased()
        // The standard library's substring search (Foundation's `contains` would go through ICU).
        for rule in rules where rule.phrases.contains(where: { lowered.firstRange(of: $0.lowercased()) != nil }) {
            return rule.reason
        }
        if let confidence, confidence < confidenceThreshold { return "low_confidence" }
        return nil
    }
}
