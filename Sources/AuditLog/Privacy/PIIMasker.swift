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

    private struct Rule: @unchecked Sendable {  // NSRegularExpression is immutable and thread-safe
        let kind: PIIKind?
        let label: String
        let regex: NSRegularExpression
        /// Cheap pre-checks: the rule cannot match text with fewer digits, or without `+`/`@`.
        let minimumDigits: Int
        let needs: UInt8?
        let accept: @Sendable (String) -> String?  // the replacement, or nil to keep the text
    }

    private let rules: [Rule]

    /// - Parameters:
    ///   - kinds: the built-in kinds to mask (all by default).
    ///   - extraPatterns: additional patterns, applied after the built-in ones.
    public init(kinds: Set<PIIKind> = Set(PIIKind.allCases), extraPatterns: [ExtraPattern] = []) throws {
        var rules: [Rule] = []
        func add(_ kind: PIIKind, _ pattern: String, _ accept: @escaping @Sendable (String) -> String?) {
            guard kinds.contains(kind) else { return }
            // The built-in patterns are constants; a failure here is a programming error.
            let regex = try! NSRegularExpression(pattern: pattern)
            let (minimumDigits, needs): (Int, UInt8?) = switch kind {
            case .chineseResidentID: (17, nil)
            case .card: (13, nil)
            case .iban: (4, nil)
            case .email: (0, UInt8(ascii: "@"))
            case .chinesePhone: (11, nil)
            case .e164Phone: (8, UInt8(ascii: "+"))
            }
            rules.append(Rule(kind: kind, label: kind.rawValue, regex: regex, minimumDigits: minimumDigits, needs: needs, accept: accept))
        }
        add(.chineseResidentID, #"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])"#) {
            Checksums.isValidChineseResidentID($0) ? "[CN_ID]" : nil
        }
        add(.card, #"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"#) { match in
            let digits = match.filter(\.isASCIIDigit)
            guard Checksums.hasCardGrouping(match), Checksums.passesLuhn(digits) else { return nil }
            return "[CARD ****\(digits.suffix(4))]"
        }
        add(.iban, #"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"#) { match in
            Checksums.longestValidIBANPrefix(match).map { "[IBAN]" + match.dropFirst($0.count) }
        }
        add(.email, #"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"#) { _ in "[EMAIL]" }
        add(.chinesePhone, #"(?<![0-9+])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"#) { _ in "[PHONE]" }
        add(.e164Phone, #"(?<![0-9A-Za-z+])\+[1-9](?:[ -]?[0-9]){7,14}(?![0-9])"#) { _ in "[PHONE]" }
        for extra in extraPatterns {
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: extra.regex) } catch {
                throw AuditError(code: .invalidArgument, message: "masking pattern \(extra.label): \(error)")
            }
            let label = "[\(extra.label.uppercased())]"
            rules.append(Rule(kind: nil, label: extra.label, regex: regex, minimumDigits: 0, needs: nil, accept: { _ in label }))
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
        // Bridged once, and again only after a replacement (bridging dominated short texts).
        var ns = current as NSString
        var found: [String] = []
        for rule in rules {
            if digitCount < rule.minimumDigits { continue }
            if let needed = rule.needs, needed == UInt8(ascii: "@") ? !hasAt : !hasPlus { continue }
            let matches = rule.regex.matches(in: current, range: NSRange(location: 0, length: ns.length))
            guard !matches.isEmpty else { continue }
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
            guard cursor > 0 else { continue }
            result += ns.substring(from: cursor)
            current = result
            ns = current as NSString
        }
        return (current, found)
    }
}

/// Check-digit algorithms for the identifiers the masker recognises.
enum Checksums {
    /// The Luhn (mod 10) check used by payment cards.
    static func passesLuhn<S: StringProtocol>(_ digits: S) -> Bool {
        let values = digits.compactMap(\.wholeNumberValue)
        guard values.count == digits.count, (13...19).contains(values.count) else { return false }
        var sum = 0
        for (index, value) in values.reversed().enumerated() {
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
    static func hasCardGrouping(_ text: String) -> Bool {
        let groups = text.split(whereSeparator: { $0 == " " || $0 == "-" }).map(\.count)
        if groups.count == 1 { return true }
        if groups == [4, 6, 5] || groups == [4, 6, 4] { return true }
        return groups.dropLast().allSatisfy { $0 == 4 } && (1...4).contains(groups.last ?? 0)
    }

    /// GB 11643-1999: ISO 7064 MOD 11-2 check character over the first 17 digits.
    static func isValidChineseResidentID(_ id: String) -> Bool {
        let characters = Array(id.uppercased())
        guard characters.count == 18 else { return false }
        let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        var sum = 0
        for index in 0..<17 {
            guard let value = characters[index].wholeNumberValue else { return false }
            sum += value * weights[index]
        }
        let check = Array("10X98765432")[sum % 11]
        return characters[17] == check
    }

    /// ISO 13616 mod-97 check on an IBAN without spaces.
    static func isValidIBAN(_ candidate: String) -> Bool {
        let compact = candidate.filter { $0 != " " }
        guard (15...34).contains(compact.count) else { return false }
        let rearranged = compact.dropFirst(4) + compact.prefix(4)
        var remainder = 0
        for character in rearranged {
            if let digit = character.wholeNumberValue, character.isASCII {
                remainder = (remainder * 10 + digit) % 97
            } else if let ascii = character.asciiValue, (65...90).contains(ascii) {
                remainder = (remainder * 100 + Int(ascii) - 55) % 97
            } else {
                return false
            }
        }
        return remainder == 1
    }

    /// The longest prefix of `match`, ending at a group boundary, that is a valid IBAN —
    /// the pattern may have swallowed a following upper-case word.
    static func longestValidIBANPrefix(_ match: String) -> String? {
        var candidate = Substring(match)
        while candidate.count >= 15 {
            if isValidIBAN(String(candidate)) { return String(candidate) }
            guard let space = candidate.lastIndex(of: " ") else { return nil }
            candidate = candidate[..<space]
        }
        return nil
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
