import Foundation
import KafkaClient
import Testing
@testable import Worker

/// The reply's hand-written JSON against `JSONEncoder` on the same reply: byte for byte, over
/// replies of every shape (each optional part present or absent) holding strings with every
/// escape and doubles of every magnitude — so consumers see exactly the bytes the contract's
/// `Codable` definition gives.
@Suite("Reply JSON: the hand-written writer matches JSONEncoder byte for byte")
struct JSONWriterTests {
    /// SplitMix64: reproducible replies.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let pieces = [
        "", "a", "ok", "/", "\\", "\"", "\n", "\r", "\t", "\u{08}", "\u{0C}", "\u{00}", "\u{01}", "\u{1F}", "\u{7F}", "</script>",
        "https://bank.example/help", "信用卡年费是多少？", "转人工", "é", "\u{2028}", "\u{2029}", "\u{FEFF}", "😀", "👩‍👩‍👧", " ",
        "{\"a\":1}", "null", "0.1",
    ]
    static let doubles: [Double] = [
        0, -0.0, 1, -1, 0.5, 0.1, 0.7, 1.0 / 3, 2.0 / 3, 0.699999999, 1e-7, 1.5e-5, 123456789.125, 1e15, 1e16, 1e21, 1e22, -2.5e-300,
        .leastNonzeroMagnitude, .greatestFiniteMagnitude, .leastNormalMagnitude, 0.30000000000000004, 100, 4096,
    ]

    static func string(_ random: inout Generator) -> String {
        (0..<Int.random(in: 0...4, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
    }

    static func strings(_ random: inout Generator, upTo count: Int) -> [String] {
        var strings: [String] = []
        for _ in 0..<Int.random(in: 0...count, using: &random) { strings.append(string(&random)) }
        return strings
    }

    static func double(_ random: inout Generator) -> Double {
        Bool.random(using: &random) ? doubles.randomElement(using: &random)! : Double.random(in: -1e6...1e6, using: &random) / 1e3
    }

    static func maybe<T>(_ random: inout Generator, _ make: (inout Generator) -> T) -> T? {
        Bool.random(using: &random) ? make(&random) : nil
    }

    /// Metadata as the codec stores it: from a decoded request.
    static func metadata(_ random: inout Generator) throws -> Data? {
        let inner = "{\"\(string(&random).escapedForTest)\":\(doubles.randomElement(using: &random)!),\"z/y\":[true,null,\"\(string(&random).escapedForTest)\"],\"A\":{\"n\":-9007199254740993}}"
        let body = "{\"request_id\":\"m\",\"prompt\":\"p\",\"metadata\":\(inner)}"
        let record = KafkaConsumerMessage(topic: "t", partition: 0, offset: 0, key: nil, value: Array(body.utf8), headers: [], timestamp: nil)
        return try RequestCodec.decode(record, limits: RequestLimits(maxPromptBytes: 1_000, defaultMaxTokens: 8, maxTokensLimit: 16, defaultTopic: "r")).metadata
    }

    static func reply(_ random: inout Generator) throws -> InferenceReply {
        let statuses: [InferenceReply.Status] = [.ok, .error, .expired, .rejected, .duplicate]
        var reply = InferenceReply(
            requestID: maybe(&random, string), status: statuses.randomElement(using: &random)!, text: maybe(&random, string),
            confidence: maybe(&random, double), escalate: Bool.random(using: &random), escalationReason: maybe(&random, string),
            worker: string(&random))
        reply.model = maybe(&random) { ModelIdentity(name: string(&$0), quantization: string(&$0), sha256: string(&$0)) }
        reply.usage = maybe(&random) { .init(promptTokens: Int.random(in: 0...100_000, using: &$0), completionTokens: Int.random(in: -1...512, using: &$0)) }
        reply.timings = maybe(&random) {
            .init(queuedMs: Int.random(in: 0...9_999_999, using: &$0), inferenceMs: Int.random(in: 0...99_999, using: &$0), totalMs: Int.random(in: Int.min...Int.max, using: &$0))
        }
        if Bool.random(using: &random) {
            reply.errorCode = string(&random)
            reply.errorMessage = maybe(&random, string)
        }
        if Bool.random(using: &random) { reply.metadata = try metadata(&random) }
        reply.original = maybe(&random) {
            .init(topic: maybe(&$0, string), partition: maybe(&$0) { Int64.random(in: 0...64, using: &$0) },
                  offset: maybe(&$0) { Int64.random(in: Int64.min...Int64.max, using: &$0) }, status: string(&$0))
        }
        reply.knowledge = maybe(&random) { .init(version: string(&$0), passages: strings(&$0, upTo: 3)) }
        reply.escalationReasons = maybe(&random) { strings(&$0, upTo: 3) }
        reply.decision = maybe(&random) {
            DecisionParts(retrieval: maybe(&$0, double), generation: maybe(&$0, double), support: maybe(&$0, double),
                          selection: maybe(&$0, double), unsupportedClaims: maybe(&$0) { strings(&$0, upTo: 2) })
        }
        reply.cache = maybe(&random) { .init(hit: Bool.random(using: &$0), requestID: string(&$0)) }
        return reply
    }

    @Test("5,000 random replies of every shape: the same bytes as JSONEncoder")
    func matchesFoundation() throws {
        var random = Generator(state: 20261203)
        var withMetadata = 0
        for _ in 0..<5_000 {
            let reply = try Self.reply(&random)
            if reply.metadata != nil { withMetadata += 1 }
            let expected = reply.encodedWithFoundation()
            let written = reply.encoded()
            #expect(!expected.isEmpty)
            #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
            if written != expected { return }
        }
        #expect(withMetadata > 1_000)
    }

    @Test("every double of the list and 20,000 random ones are written as JSONEncoder writes them")
    func doubles() {
        var random = Generator(state: 7)
        let values = Self.doubles + (0..<20_000).map { _ in Double(bitPattern: random.next()) }.filter(\.isFinite)
        for value in values {
            let reply = InferenceReply(requestID: "d", status: .ok, confidence: value, escalate: false, worker: "w")
            #expect(reply.encoded() == reply.encodedWithFoundation(), "\(value)")
        }
    }

    @Test("a non-finite confidence is written as null (JSONEncoder refuses it and the reply would be empty)")
    func nonFinite() throws {
        for value in [Double.nan, .infinity, -.infinity] {
            let reply = InferenceReply(requestID: "n", status: .ok, confidence: value, escalate: true, worker: "w")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.encoded())) as? [String: Any])
            #expect(object["confidence"] is NSNull)
            #expect(object["request_id"] as? String == "n")
        }
    }
}

extension String {
    /// As a JSON string literal's contents (the test's own, through JSONSerialization).
    fileprivate var escapedForTest: String {
        let data = try! JSONSerialization.data(withJSONObject: [self], options: [.fragmentsAllowed])
        return String(decoding: data.dropFirst(2).dropLast(2), as: UTF8.self)
    }
}
