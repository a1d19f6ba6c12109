/// Finds the built-in kinds of personal data in UTF-8 text without a regular-expression
/// engine: for each kind, what `PIIMasker.referencePatterns` matches — leftmost first,
/// greedy, non-overlapping, with the same look-behind and look-ahead — in one pass over the
/// bytes. Every class the patterns use is ASCII, so a multi-byte character is simply
/// "none of them", as it is to ICU.
///
/// Each `match…` function answers for one start position: the match's end, or where the
/// next start worth trying is (past positions that cannot start a match either).
enum PIIScanner {
    enum Step {
        case match(end: Int)
        case next(Int)
    }

    /// The non-overlapping matches of `kind` in `bytes`, in order.
    static func matches(of kind: PIIKind, in bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        var found: [Range<Int>] = []
        var index = 0
        let text = Text(bytes: bytes)
        while index < bytes.count {
            let step: Step = switch kind {
            case .chineseResidentID: text.residentID(at: index)
            case .card: text.card(at: index)
            case .iban: text.iban(at: index)
            case .email: text.email(at: index)
            case .chinesePhone: text.chinesePhone(at: index)
            case .e164Phone: text.e164(at: index)
            }
            switch step {
            case .match(let end):
                found.append(index..<end)
                index = end
            case .next(let next):
                index = max(next, index + 1)
            }
        }
        return found
    }

    struct Text {
        let bytes: UnsafeBufferPointer<UInt8>

        /// The byte at `index`, or 0 (in no class) outside the text.
        @inline(__always) func at(_ index: Int) -> UInt8 { index >= 0 && index < bytes.count ? bytes[index] : 0 }
        @inline(__always) func digit(_ index: Int) -> Bool { (48...57).contains(at(index)) }
        @inline(__always) func upper(_ index: Int) -> Bool { (65...90).contains(at(index)) }
        @inline(__always) func letter(_ index: Int) -> Bool { upper(index) || (97...122).contains(at(index)) }
        @inline(__always) func alphanumeric(_ index: Int) -> Bool { digit(index) || letter(index) }
        @inline(__always) func separator(_ index: Int) -> Bool { at(index) == 32 || at(index) == 45 }  // space, '-'
        @inline(__always) func digits(_ index: Int, _ count: Int) -> Bool { (index..<(index + count)).allSatisfy(digit) }

        /// After a digit at `first`: the ends of the digits that follow, each directly or after
        /// one space or dash (`(?:[ -]?[0-9])`, greedy), at most `limit` of them. The result
        /// starts with `first + 1`, the end before any repetition.
        func digitRun(after first: Int, limit: Int) -> [Int] {
            var ends = [first + 1]
            var position = first + 1
            while ends.count <= limit {
                if digit(position) {
                    position += 1
                } else if separator(position), digit(position + 1) {
                    position += 2
                } else {
                    break
                }
                ends.append(position)
            }
            return ends
        }

        /// The longest repetition count in `minimum…` whose end is not followed by a digit
        /// (`(?![0-9])` after a greedy repetition backtracks to it).
        func longestEnd(_ ends: [Int], minimum: Int, notFollowedBy excluded: (Int) -> Bool) -> Int? {
            guard ends.count - 1 >= minimum else { return nil }
            for repetitions in stride(from: ends.count - 1, through: minimum, by: -1) where !excluded(ends[repetitions]) {
                return ends[repetitions]
            }
            return nil
        }

        // `(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])`
        func residentID(at i: Int) -> Step {
            guard (49...57).contains(at(i)), !alphanumeric(i - 1), digits(i + 1, 5) else { return .next(i + 1) }
            let century = (at(i + 6), at(i + 7))
            guard century == (49, 56) || century == (49, 57) || century == (50, 48), digits(i + 8, 2) else { return .next(i + 1) }
            let month = (at(i + 10), at(i + 11))
            guard (month.0 == 48 && (49...57).contains(month.1)) || (month.0 == 49 && (48...50).contains(month.1)) else { return .next(i + 1) }
            let day = (at(i + 12), at(i + 13))
            let validDay = (day.0 == 48 && (49...57).contains(day.1)) || ((49...50).contains(day.0) && digit(i + 13))
                || (day.0 == 51 && (48...49).contains(day.1))
            guard validDay, digits(i + 14, 3), digit(i + 17) || at(i + 17) == 88 || at(i + 17) == 120, !alphanumeric(i + 18) else {
                return .next(i + 1)
            }
            return .match(end: i + 18)
        }

        // `(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])`
        func card(at i: Int) -> Step {
            guard digit(i), !digit(i - 1) else { return .next(i + 1) }
            let ends = digitRun(after: i, limit: 18)
            return longestEnd(ends, minimum: 12, notFollowedBy: digit).map { .match(end: $0) } ?? .next(i + 1)
        }

        // `(?<![0-9A-Za-z+])\+[1-9](?:[ -]?[0-9]){7,14}(?![0-9])`
        func e164(at i: Int) -> Step {
            guard at(i) == 43, (49...57).contains(at(i + 1)), !alphanumeric(i - 1), at(i - 1) != 43 else { return .next(i + 1) }
            let ends = digitRun(after: i + 1, limit: 14)
            return longestEnd(ends, minimum: 7, notFollowedBy: digit).map { .match(end: $0) } ?? .next(i + 1)
        }

        // `(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])`
        func iban(at i: Int) -> Step {
            guard upper(i), upper(i + 1), digit(i + 2), digit(i + 3), !alphanumeric(i - 1) else { return .next(i + 1) }
            func element(_ index: Int) -> Bool { upper(index) || digit(index) }
            var ends = [i + 4]
            var position = i + 4
            while ends.count <= 30 {
                if at(position) == 32, element(position + 1) {
                    position += 2
                } else if element(position) {
                    position += 1
                } else {
                    break
                }
                ends.append(position)
            }
            return longestEnd(ends, minimum: 11, notFollowedBy: alphanumeric).map { .match(end: $0) } ?? .next(i + 1)
        }

        // `[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`
        func email(at i: Int) -> Step {
            func local(_ index: Int) -> Bool {
                switch at(index) {
                case 46, 95, 37, 43, 45: true  // . _ % + -
                default: alphanumeric(index)
                }
            }
            func label(_ index: Int) -> Bool { alphanumeric(index) || at(index) == 45 }
            guard local(i) else { return .next(i + 1) }
            var sign = i
            while local(sign) { sign += 1 }
            // Every start in this run reaches the same byte: no '@' there, or a domain that
            // fails, fails them all.
            guard at(sign) == 64 else { return .next(sign) }
            var labels: [Range<Int>] = []
            var position = sign + 1
            while label(position) {
                let start = position
                while label(position) { position += 1 }
                labels.append(start..<position)
                guard at(position) == 46, label(position + 1) else { break }
                position += 1
            }
            // Greedy: the last label that starts with two letters ends the match (at its last leading letter).
            for candidate in labels.dropFirst().reversed() {
                var end = candidate.lowerBound
                while letter(end) && end < candidate.upperBound { end += 1 }
                if end - candidate.lowerBound >= 2 { return .match(end: end) }
            }
            return .next(sign + 1)
        }

        // `(?<![0-9+])(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])`
        func chinesePhone(at i: Int) -> Step {
            switch at(i) {
            case 43, 48, 56, 49: break  // + 0 8 1
            default: return .next(i + 1)
            }
            guard !digit(i - 1), at(i - 1) != 43 else { return .next(i + 1) }
            // `1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])` from `p`: its end.
            func number(_ p: Int) -> Int? {
                guard at(p) == 49, (51...57).contains(at(p + 1)), digit(p + 2) else { return nil }
                var position = p + 3
                for _ in 0..<2 {
                    if separator(position), digits(position + 1, 4) {
                        position += 5
                    } else if digits(position, 4) {
                        position += 4
                    } else {
                        return nil
                    }
                }
                return digit(position) ? nil : position
            }
            // The optional country code, tried first (greedy), in the pattern's order: `+`, `00`, none.
            for lead in [at(i) == 43 ? 1 : -1, at(i) == 48 && at(i + 1) == 48 ? 2 : -1, 0] where lead >= 0 {
                let p = i + lead
                guard at(p) == 56, at(p + 1) == 54 else { continue }
                if separator(p + 2), let end = number(p + 3) { return .match(end: end) }
                if let end = number(p + 2) { return .match(end: end) }
            }
            return number(i).map { .match(end: $0) } ?? .next(i + 1)
        }
    }
}
