import Foundation

/// A checkable statement of fact in an answer: something a customer would act on.
public struct FactClaim: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable {
        case number, percentage, phone, time, date, url, email
    }

    public var kind: Kind
    /// As written in the answer.
    public var text: String

    public init(kind: Kind, text: String) {
        self.kind = kind
        self.text = text
    }
}

/// How well an answer is supported by the passages it was grounded in.
public struct GroundingReport: Sendable, Equatable {
    /// Claims (numbers, amounts, percentages, phone numbers, dates and times, URLs, e-mail
    /// addresses) that do not appear in any passage.
    public var unsupportedClaims: [FactClaim]
    /// The share of the answer's content terms (``TermExtractor``) found in the passages, in
    /// [0, 1]; 1 for an answer without content terms.
    public var support: Double
}

/// The checks an answer must pass before it may reach a customer unreviewed: every fact it
/// states appears in the passages, and most of its content is theirs.
public enum GroundingCheck {
    public static func check(answer: String, passages: [String]) -> GroundingReport {
        let source = passages.joined(separator: "\n")
        let sourceFacts = Set(claims(in: source).map { normalized($0) })
        let sourceNumbers = sourceFacts.flatMap { components($0) }
        let lowerSource = source.lowercased()
        let unsupported = claims(in: answer).filter { claim in
            let form = normalized(claim)
            switch claim.kind {
            case .url, .email: return !lowerSource.contains(claim.text.lowercased())
            default: return !sourceFacts.contains(form) && !sourceNumbers.contains(form)
            }
        }
        let answerTerms = Set(TermExtractor.terms(answer))
        let sourceTerms = Set(TermExtractor.terms(source))
        let support = answerTerms.isEmpty ? 1 : Double(answerTerms.filter(sourceTerms.contains).count) / Double(answerTerms.count)
        return GroundingReport(unsupportedClaims: unsupported, support: support)
    }

    /// The fact claims of `text`, in order.
    public static func claims(in text: String) -> [FactClaim] {
        var found: [FactClaim] = []
        var covered: [Range<String.Index>] = []
        for (kind, pattern) in patterns {
            for match in text.matches(of: pattern) where !covered.contains(where: { $0.overlaps(match.range) }) {
                var value = String(text[match.range])
                while let last = value.last, ".,;:-/".contains(last) { value.removeLast() }
                guard !value.isEmpty else { continue }
                covered.append(match.range)
                found.append(FactClaim(kind: kind.resolve(value), text: value))
            }
        }
        // Number words ("fifty thousand"): whole words, found by scanning (no regex word boundaries).
        var word = ""
        var start = text.startIndex
        for index in text.indices + [text.endIndex] {
            if index < text.endIndex, text[index].isASCII, text[index].isLetter {
                if word.isEmpty { start = index }
                word.append(text[index])
                continue
            }
            if numberWords.contains(word.lowercased()) {
                let range = start..<index
                if !covered.contains(where: { $0.overlaps(range) }) { found.append(FactClaim(kind: .number, text: word)) }
            }
            word = ""
        }
        return found.sorted { a, b in
            (text.range(of: a.text)?.lowerBound ?? text.endIndex) < (text.range(of: b.text)?.lowerBound ?? text.endIndex)
        }
    }

    private enum PatternKind {
        case url, email, numeric
        func resolve(_ value: String) -> FactClaim.Kind {
            switch self {
            case .url: return .url
            case .email: return .email
            case .numeric:
                if value.hasSuffix("%") { return .percentage }
                if value.contains(":") { return .time }
                let digits = value.filter(\.isNumber).count
                if value.contains("/") || (value.filter { $0 == "-" }.count == 2 && digits == 8) { return .date }
                if value.hasPrefix("+") || digits >= 7 || value.contains("-") { return .phone }
                return .number
            }
        }
    }

    // Order matters: the longer forms claim their text first.
    nonisolated(unsafe) private static let patterns: [(PatternKind, Regex<Substring>)] = [
        (.url, try! Regex(#"(?i)(?:https?://|www\.)[^\s，。）)]+"#)),
        (.email, try! Regex(#"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"#)),
        (.numeric, try! Regex(#"\+?\d(?:[\d,.:/\-]*\d)?%?"#)),
    ]

    static let numberWords: Set<String> = [
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "fifteen", "twenty", "thirty",
        "forty", "fifty", "hundred", "thousand", "million", "billion",
    ]

    /// The comparable form of a claim: lower case, thousands separators and spaces removed.
    static func normalized(_ claim: FactClaim) -> String {
        var value = claim.text.lowercased()
        if claim.kind != .url && claim.kind != .email {
            value = value.replacingOccurrences(of: ",", with: "").replacingOccurrences(of: " ", with: "")
        }
        return value
    }

    /// The parts of a phone number or date ("+86-10-95588" → "86", "10", "95588"), so that an
    /// answer quoting the local number is supported by a passage giving the full one.
    static func components(_ value: String) -> [String] {
        let parts = value.split(whereSeparator: { "+-/".contains($0) }).map(String.init)
        return parts.count > 1 ? parts : []
    }
}

/// Splits approved text into the sentences an extractive answer may quote.
public enum SentenceSplitter {
    /// Sentences end at 。！？!? and at a full stop followed by a space or the end (so "1.45%"
    /// and "9.30" stay whole). Each keeps its closing punctuation.
    public static func sentences(_ text: String) -> [String] {
        var sentences: [String] = []
        var current = ""
        let characters = Array(text)
        for (index, character) in characters.enumerated() {
            current.append(character)
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            let ends = "。！？!?".contains(character) || (character == "." && (next == nil || next!.isWhitespace))
            if ends {
                let sentence = current.trimmingCharacters(in: .whitespacesAndNewlines)
                if !sentence.isEmpty { sentences.append(sentence) }
                current = ""
            }
        }
        let rest = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty { sentences.append(rest) }
        return sentences
    }
}
