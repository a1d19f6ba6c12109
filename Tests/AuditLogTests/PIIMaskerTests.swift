import AuditLog
import Testing

@Suite("PII masking")
struct PIIMaskerTests {
    static let masker = try! PIIMasker()

    @Test("recognised items are masked, look-alikes with bad check digits are not", arguments: [
        // Payment cards (Luhn)
        ("Card 4111 1111 1111 1111 was charged", "Card [CARD ****1111] was charged"),
        ("Card 4111-1111-1111-1112 was charged", "Card 4111-1111-1111-1112 was charged"),
        ("我的卡号是6222021234567894，请冻结", "我的卡号是[CARD ****7894]，请冻结"),
        ("我的卡号是6222021234567890，请冻结", "我的卡号是6222021234567890，请冻结"),
        ("pay 5500000000000004.", "pay [CARD ****0004]."),
        ("amex 3782 822463 10005 ok", "amex [CARD ****0005] ok"),
        // Chinese resident ID numbers (GB 11643 check character)
        ("身份证号11010519491231002X。", "身份证号[CN_ID]。"),
        ("ID 11010519491231002x please", "ID [CN_ID] please"),
        ("身份证号110105194912310021。", "身份证号110105194912310021。"),
        // Mainland China mobile numbers
        ("call 13812345678 now", "call [PHONE] now"),
        ("电话：+86 138 1234 5678", "电话：[PHONE]"),
        ("order 12345678901 shipped", "order 12345678901 shipped"),
        // E.164
        ("ring +44 20 7946 0958 today", "ring [PHONE] today"),
        ("ring +14155552671", "ring [PHONE]"),
        ("rate +12.5%", "rate +12.5%"),
        // Email
        ("mail jane.doe@example.com, thanks", "mail [EMAIL], thanks"),
        ("邮箱 wang_li+bank@mail.example.cn 谢谢", "邮箱 [EMAIL] 谢谢"),
        ("user at example dot com", "user at example dot com"),
        // IBAN (mod 97)
        ("to GB82 WEST 1234 5698 7654 32 please", "to [IBAN] please"),
        ("to DE89370400440532013000", "to [IBAN]"),
        ("to GB82 WEST 1234 5698 7654 33 please", "to GB82 WEST 1234 5698 7654 33 please"),
        ("IBAN GB82WEST12345698765432 OK THANKS", "IBAN [IBAN] OK THANKS"),
        // Ordinary numbers stay readable
        ("fee of 25.00 on 2026-11-22, order 1234567890123", "fee of 25.00 on 2026-11-22, order 1234567890123"),
    ])
    func masking(input: String, expected: String) {
        #expect(Self.masker.mask(input) == expected)
    }

    @Test("several kinds in one text are all masked")
    func mixed() {
        let masked = Self.masker.mask("卡4111111111111111，手机13812345678，邮箱a@b.cn，身份证11010519491231002X")
        #expect(masked == "卡[CARD ****1111]，手机[PHONE]，邮箱[EMAIL]，身份证[CN_ID]")
    }

    @Test("kinds can be switched off and extra patterns added")
    func configurable() throws {
        let masker = try PIIMasker(kinds: [.email], extraPatterns: [.init(label: "account", regex: "ACC-[0-9]{8}")])
        #expect(masker.mask("a@b.cn 4111111111111111 ACC-12345678") == "[EMAIL] 4111111111111111 [ACCOUNT]")
        #expect(throws: AuditError.self) { try PIIMasker(extraPatterns: [.init(label: "bad", regex: "([")]) }
    }
}
