import Foundation

/// Decides whether an answer goes to a human agent: low confidence, or a rule matching the
/// customer's words (asks for a human, fraud, complaint).
public struct EscalationPolicy: Sendable {
    public struct Rule: Sendable, Equatable {
        /// Recorded as the escalation reason, e.g. `human_requested`.
        public var reason: String
        /// Case-insensitive substrings of the prompt that trigger the rule.
        public var phrases: [String] { didSet { lowered = Self.lowered(phrases) } }
        /// The phrases lower-cased, as UTF-8 (matched byte-wise: UTF-8 is self-synchronising,
        /// so a byte match is a match of whole code points).
        private var lowered: [[UInt8]]

        public init(reason: String, phrases: [String]) {
            self.reason = reason
            self.phrases = phrases
            lowered = Self.lowered(phrases)
        }

        public static func == (lhs: Self, rhs: Self) -> Bool { lhs.reason == rhs.reason && lhs.phrases == rhs.phrases }

        private static func lowered(_ phrases: [String]) -> [[UInt8]] { phrases.map { Array($0.lowercased().utf8) }.filter { !$0.isEmpty } }

        private static func contains(_ haystack: UnsafeRawBufferPointer, _ needle: UnsafeRawBufferPointer) -> Bool {
            guard let first = needle.first, needle.count <= haystack.count else { return false }
            var index = 0
            while index <= haystack.count - needle.count {
                if haystack[index] == first, memcmp(haystack.baseAddress! + index, needle.baseAddress!, needle.count) == 0 { return true }
                index += 1
            }
            return false
        }

        func matches(_ prompt: [UInt8]) -> Bool {
            prompt.withUnsafeBytes { haystack in
                lowered.contains { phrase in
                    phrase.withUnsafeBytes { needle in Self.contains(haystack, needle) }
                }
            }
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
        let lowered = Array(prompt.lowercased().utf8)
        return rules.filter { $0.matches(lowered) }.map(\.reason)
    }

    /// The reason to escalate, or nil. Rules on the prompt come first (they hold even for a
    /// confident answer); then the confidence threshold.
    public func reason(prompt: String, confidence: Double?) -> String? {
        let lowered = Array(prompt.lowercased().utf8)
        for rule in rules where rule.matches(lowered) { return rule.reason }
        if let confidence, confidence < confidenceThreshold { return "low_confidence" }
        return nil
    }
}
