import Foundation

/// The kinds of personal data the masker recognises.
public enum PIIKind: String, Sendable, CaseIterable, Codable {
    /// Payment card numbers (13–19 digits, spaces or dashes allowed), Luhn-checked.
    case card
    /// Chinese resident identity numbers (18 characters), checksum- and date-validated.
    case chineseResidentID = "cn_id"
    /// Mainland China mobile numbers, with or without +86.
    case chinesePhone = "cn_phone"
    /// International numbers in E.164 form (`+` and 8–15 digits).
    case e164Phone = "phone"
    case email
    /// International bank account numbers, mod-97-checked.
    case iban
}

/// Masks personal data in free text before it is stored.
///
/// Numbers are masked only when their check digits are valid, so order numbers, amounts and
/// dates stay readable for the auditor. Cards keep their last four digits (`[CARD ****1234]`),
/// the other kinds become a label (`[EMAIL]`, `[CN_ID]`, …). Extra patterns are regular
/// expressions (ICU syntax) with their own label.
public struct PIIMasker: Sendable {
    /// A site-specific pattern, e.g. internal customer numbers.
    public struct ExtraPattern: Sendable {
        public var label: String
        public var regex: String
        public init(label: String, regex: String) {
            self.label = label
            self.regex = regex
        }
    }

    /// How a rule finds its candidates: the built-in kinds with a hand-written scanner over
    /// UTF-8 (`PIIScanner`, which finds exactly what `referencePatterns` would — a property
    /// test holds them together), extra patterns with ICU regular expressions.
    enum Matcher: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
        case scanner(PIIKind)
        case regex(NSRegularExpression)
    }

    private struct Rule: Sendable {
        let label: String
        let matcher: Matcher
        /// Cheap pre-checks: the rule cannot match text with fewer digits, or without `+`/`@`.
        let minimumDigits: Int
        let needs: UInt8?
        let accept: @Sendable (String) -> String?  // the replacement, or nil to keep the text
    }

    /// The built-in kinds as regular expressions (ICU syntax): the specification the scanner
    /// implements, leftmost match first, greedy, non-overlapping.
    static let referencePatterns: [PIIKind: String] = [
        .chineseResidentID: #"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])"#,
        .card: #"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"#,
        .iban: #"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"#,
        .email: #"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"#,
        .chinesePhone: #"(?<![0-9+])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"#,
        .e164Phone: #"(?<![0-9A-Za-z+])\+[1-9](?:[ -]?[0-9]){7,14}(?![0-9])"#,
    ]

    private let rules: [Rule]

    /// - Parameters:
    ///   - kinds: the built-in kinds to mask (all by default).
    ///   - extraPatterns: additional patterns, applied after the built-in ones.
    public init(kinds: Set<PIIKind> = Set(PIIKind.allCases), extraPatterns: [ExtraPattern] = []) throws {
        try self.init(kinds: kinds, extraPatterns: extraPatterns, builtInsAsRegex: false)
    }

    /// `builtInsAsRegex`: match the built-in kinds with `referencePatterns` instead of the
    /// scanner (the reference the scanner is tested against).
    init(kinds: Set<PIIKind>, extraPatterns: [ExtraPattern], builtInsAsRegex: Bool) throws {
        var rules: [Rule] = []
        func add(_ kind: PIIKind, _ accept: @escaping @Sendable (String) -> String?) {
            guard kinds.contains(kind) else { return }
            // The built-in patterns are constants; a failure here is a programming error.
            let matcher: Matcher = builtInsAsRegex ? .regex(try! NSRegularExpression(pattern: Self.referencePatterns[kind]!)) : .scanner(kind)
            let (minimumDigits, needs): (Int, UInt8?) = switch kind {
            case .chineseResidentID: (17, nil)
            case .card: (13, nil)
            case .iban: (4, nil)
            case .email: (0, UInt8(ascii: "@"))
            case .chinesePhone: (11, nil)
            case .e164Phone: (8, UInt8(ascii: "+"))
            }
            rules.append(Rule(label: kind.rawValue, matcher: matcher, minimumDigits: minimumDigits, needs: needs, accept: accept))
        }
        add(.chineseResidentID) { Checksums.isValidChineseResidentID(Array($0.utf8)) ? "[CN_ID]" : nil }
        add(.card) { match in
            let bytes = Array(match.utf8)
            let digits = bytes.filter(Checksums.isDigit)
            guard Checksums.hasCardGrouping(bytes), Checksums.passesLuhn(digits) else { return nil }
            return "[CARD ****\(String(decoding: digits.suffix(4), as: UTF8.self))]"
        }
        add(.iban) { match in
            Checksums.longestValidIBANPrefix(Array(match.utf8)).map { "[IBAN]" + String(decoding: match.utf8.dropFirst($0), as: UTF8.self) }
        }
        add(.email) { _ in "[EMAIL]" }
        add(.chinesePhone) { _ in "[PHONE]" }
        add(.e164Phone) { _ in "[PHONE]" }
        for extra in extraPatterns {
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: extra.regex) } catch {
                throw AuditError(code: .invalidArgument, message: "masking pattern \(extra.label): \(error)")
            }
            let label = "[\(extra.label.uppercased())]"
            rules.append(Rule(label: extra.label, matcher: .regex(regex), minimumDigits: 0, needs: nil, accept: { _ in label }))
        }
        self.rules = rules
    }

    /// `text` with every recognised item replaced.
    public func mask(_ text: String) -> String {
        masked(text).text
    }

    /// `text` masked, and the labels of what was found (for metrics, never the values).
    public func masked(_ text: String) -> (text: String, found: [String]) {
        var digitCount = 0
        var hasAt = false
        var hasPlus = false
        for byte in text.utf8 {
            if byte >= 48 && byte <= 57 {
                digitCount += 1
            } else if byte == UInt8(ascii: "@") {
                hasAt = true
            } else if byte == UInt8(ascii: "+") {
                hasPlus = true
            }
        }
        var current = text
        var found: [String] = []
        for rule in rules {
            if digitCount < rule.minimumDigits { continue }
            if let needed = rule.needs, needed == UInt8(ascii: "@") ? !hasAt : !hasPlus { continue }
            switch rule.matcher {
            case .scanner(let kind):
                if let replaced = Self.replacing(in: current, kind: kind, rule: rule, found: &found) { current = replaced }
            case .regex(let regex):
                if let replaced = Self.replacing(in: current, regex: regex, rule: rule, found: &found) { current = replaced }
            }
        }
        return (current, found)
    }

    /// `text` with the scanner's accepted matches replaced, or nil when nothing was.
    private static func replacing(in text: String, kind: PIIKind, rule: Rule, found: inout [String]) -> String? {
        var text = text
        return text.withUTF8 { bytes -> String? in
            var result: [UInt8] = []
            var cursor = 0
            for range in PIIScanner.matches(of: kind, in: bytes) {
                guard let replacement = rule.accept(String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)) else { continue }
                if result.isEmpty { result.reserveCapacity(bytes.count + 16) }
                result.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[cursor..<range.lowerBound]))
                result.append(contentsOf: replacement.utf8)
                cursor = range.upperBound
                found.append(rule.label)
            }
            guard cursor > 0 else { return nil }
            result.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[cursor...]))
            return String(decoding: result, as: UTF8.self)
        }
    }

    /// `text` with the regular expression's accepted matches replaced, or nil when nothing was.
    private static func replacing(in text: String, regex: NSRegularExpression, rule: Rule, found: inout [String]) -> String? {
        let ns = text as NSString
        let matches = regex.matches(in: text, range: NSRange(location: 0, length: ns.length))
        guard !matches.isEmpty else { return nil }
        var result = ""
        var cursor = 0
        for match in matches {
            let piece = ns.substring(with: match.range)
            guard let replacement = rule.accept(piece) else { continue }
            result += ns.substring(with: NSRange(location: cursor, length: match.range.location - cursor))
            result += replacement
            cursor = match.range.location + match.range.length
            found.append(rule.label)
        }
        guard cursor > 0 else { return nil }
        result += ns.substring(from: cursor)
        return result
    }
}

/// Check-digit algorithms for the identifiers the masker recognises, over the ASCII bytes of
/// a match (every pattern matches ASCII only).
enum Checksums {
    static func isDigit(_ byte: UInt8) -> Bool { (48...57).contains(byte) }

    /// The Luhn (mod 10) check used by payment cards, over 13–19 digits.
    static func passesLuhn(_ digits: [UInt8]) -> Bool {
        guard digits.allSatisfy(isDigit), (13...19).contains(digits.count) else { return false }
        var sum = 0
        for (index, byte) in digits.reversed().enumerated() {
            let value = Int(byte - 48)
            if index % 2 == 1 {
                let doubled = value * 2
                sum += doubled > 9 ? doubled - 9 : doubled
            } else {
                sum += value
            }
        }
        return sum % 10 == 0
    }

    /// Cards are written unbroken, in groups of four (the last may be shorter), or 4-6-5
    /// (American Express). Other groupings (`+86 138 1234 5678`) are something else.
    static func hasCardGrouping(_ text: [UInt8]) -> Bool {
        let groups = text.split(whereSeparator: { $0 == 32 || $0 == 45 }).map(\.count)
        if groups.count == 1 { return true }
        if groups == [4, 6, 5] || groups == [4, 6, 4] { return true }
        return groups.dropLast().allSatisfy { $0 == 4 } && (1...4).contains(groups.last ?? 0)
    }

    /// GB 11643-1999: ISO 7064 MOD 11-2 check character over the first 17 digits.
    static func isValidChineseResidentID(_ id: [UInt8]) -> Bool {
        guard id.count == 18, id[..<17].allSatisfy(isDigit) else { return false }
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        var sum = 0
        for index in 0..<17 { sum += Int(id[index] - 48) * weights[index] }
        let check = Array("10X98765432".utf8)[sum % 11]
        return (id[17] == 120 ? 88 : id[17]) == check  // 'x' counts as 'X'
    }

    /// ISO 13616 mod-97 check on an IBAN (spaces ignored).
    static func isValidIBAN(_ candidate: ArraySlice<UInt8>) -> Bool {
        let compact = candidate.filter { $0 != 32 }
        guard (15...34).contains(compact.count) else { return false }
        var remainder = 0
        for byte in compact.dropFirst(4) + compact.prefix(4) {
            if isDigit(byte) {
                remainder = (remainder * 10 + Int(byte - 48)) % 97
            } else if (65...90).contains(byte) {
                remainder = (remainder * 100 + Int(byte) - 55) % 97
            } else {
                return false
            }
        }
        return remainder == 1
    }

    /// The length of the longest prefix of `match`, ending at a group boundary, that is a
    /// valid IBAN — the pattern may have swallowed a following upper-case word.
    static func longestValidIBANPrefix(_ match: [UInt8]) -> Int? {
        var candidate = match[...]
        while candidate.count >= 15 {
            if isValidIBAN(candidate) { return candidate.count }
            guard let space = candidate.lastIndex(of: 32) else { return nil }
            candidate = candidate[..<space]
        }
        return nil
    }
}
