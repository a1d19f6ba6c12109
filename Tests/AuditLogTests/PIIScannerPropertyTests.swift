import PropertyBased
import Testing
@testable import AuditLog

/// The hand-written scanner against the regular expressions it implements: on texts built
/// from the characters and fragments the patterns care about (valid and near-valid cards,
/// ids, IBANs, phones, addresses, with separators and look-around neighbours), every kind
/// alone and all together must mask exactly as ICU's matcher does.
@Suite("PII scanner: the same matches as the reference regular expressions")
struct PIIScannerPropertyTests {
    static let fragments = [
        "0", "1", "3", "8", "9", "00", "86", "138", "19", "20", "X", "x", " ", "-", "+", "@", ".", "_", "%", "A", "Z", "a", "z",
        "GB", "DE", "WEST", "cn", "com", "中", "，", "。", "\n",
        "4111 1111 1111 1111", "4111-1111-1111-1111", "6222021234567894", "378282246310005", "3782 822463 10005",
        "11010519491231002X", "110105194912310021", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000",
        "+44 20 7946 0958", "+14155552671", "13812345678", "+86 138 1234 5678", "0086-13812345678", "86 138-1234-5678",
        "jane.doe@example.com", "a@b.cn", "wang_li+bank@mail.example.cn", "x@y.z1", "1234 5678", "2026-11-22",
    ]

    static let reference = try! PIIMasker(kinds: Set(PIIKind.allCases), extraPatterns: [], builtInsAsRegex: true)
    static let scanner = try! PIIMasker()
    static let single = PIIKind.allCases.map { kind in
        (kind, try! PIIMasker(kinds: [kind], extraPatterns: [], builtInsAsRegex: true), try! PIIMasker(kinds: [kind]))
    }

    static func check(_ text: String) {
        let (expected, scanned) = (reference.masked(text), scanner.masked(text))
        #expect(scanned.text == expected.text, "all kinds: \(text.debugDescription)")
        #expect(scanned.found == expected.found, "all kinds: \(text.debugDescription)")
        for (kind, regex, scan) in single {
            #expect(scan.mask(text) == regex.mask(text), "\(kind): \(text.debugDescription)")
        }
    }

    @Test("texts of fragments around the patterns' edges")
    func fragmentsAgree() async {
        await propertyCheck(count: 4_000, input: Gen.element(of: Self.fragments).array(of: 0...24)) { parts in
            Self.check(parts.compactMap { $0 }.joined())
        }
    }

    @Test("texts of single characters the patterns' classes split on")
    func charactersAgree() async {
        let characters = Array("0123456789 -+@._%AXZaxz中\n").map(String.init)
        await propertyCheck(count: 4_000, input: Gen.element(of: characters).array(of: 0...60)) { parts in
            Self.check(parts.compactMap { $0 }.joined())
        }
    }

    @Test("the unit cases and an empty text")
    func fixedCases() {
        for text in ["", "+", "@", "a@b", "a@b.c", "a@b.cd", "a@-.cd", "..@x.yz", "+8613812345678", "0086 13812345678", "86-13812345678",
                     "4111111111111111111111", "1 2 3 4 5 6 7 8 9 0 1 2 3", "GB82WEST12345698765432a", "GB82 WEST 1234 5698 7654 32 X"] {
            Self.check(text)
        }
    }
}
