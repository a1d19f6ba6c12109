import Foundation

/// Builds the model's input from a template that puts the retrieved passages before the
/// question. Placeholders: `{passages}` (one line per passage, `{title}: {text}`),
/// `{question}` (the customer's latest message) and `{history}` (earlier turns, one per line,
/// empty when there are none).
public struct GroundedPrompt: Sendable, Equatable {
    public var template: String

    /// Works for English and Chinese questions with the default (pretrained, not instruction
    /// tuned) model: a document-like layout it continues with an answer line.
    public static let defaultTemplate = "Bank information:\n{passages}\n\n{history}Customer question: {question}\nAnswer:"

    public init(template: String = GroundedPrompt.defaultTemplate) {
        self.template = template
    }

    public func render(question: String, passages: [KnowledgeEntry], history: [String] = []) -> String {
        let lines = passages.map { "- \($0.title): \($0.text)" }.joined(separator: "\n")
        let earlier = history.isEmpty ? "" : history.joined(separator: "\n") + "\n"
        return template
            .replacingOccurrences(of: "{passages}", with: lines)
            .replacingOccurrences(of: "{history}", with: earlier)
            .replacingOccurrences(of: "{question}", with: question)
    }

    /// A text an extractive answer may be, and the passage (index) it comes from.
    public struct Candidate: Sendable, Equatable {
        public var text: String
        public var passage: Int
    }

    /// The texts an extractive answer may be: each passage's sentences, and the whole
    /// passage when it has more than one. Duplicates are dropped; the order is the passages'.
    public static func candidates(_ passages: [KnowledgeEntry]) -> [Candidate] {
        var seen = Set<String>()
        var result: [Candidate] = []
        for (index, passage) in passages.enumerated() {
            let sentences = SentenceSplitter.sentences(passage.text)
            for text in sentences + (sentences.count > 1 ? [passage.text] : []) where seen.insert(text).inserted {
                result.append(Candidate(text: text, passage: index))
            }
        }
        return result
    }
}
