import Foundation
import KafkaClient
import PropertyBased
import Testing
@testable import Worker

/// The decoder against arbitrary input: random bytes, and JSON objects of the contract's
/// fields holding extreme or mistyped values, with random reply headers. It must never trap,
/// and what it returns (or the rejection it throws) always respects the limits.
@Suite("Request codec: arbitrary input never traps")
struct RequestCodecPropertyTests {
    static let limits = RequestLimits(maxPromptBytes: 4_096, defaultMaxTokens: 8, maxTokensLimit: 16, defaultTopic: "replies")
    static let codes: Set<String> = [
        "invalid_utf8", "malformed_json", "missing_field", "invalid_field", "invalid_header", "prompt_too_large",
    ]

    static let keys = [
        "request_id", "prompt", "messages", "reply_to", "conversation_id", "customer_ref", "channel", "max_tokens",
        "temperature", "top_p", "seed", "deadline", "priority", "metadata", "unknown",
    ]
    static let values = [
        "0", "1", "0.0", "1.0", "-0", "-1", "2", "16", "17", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
        "18446744073709551615", "18446744073709551616", "1e20", "-1e20", "1e308", "1e400", "-1e400", "4.9e-324", "0.5",
        "true", "false", "null", "\"\"", "\"a\"", "\"NaN\"", "\"Infinity\"", "\"2026-12-01T10:00:00Z\"", "\"batch\"",
        "[]", "[1]", "[{\"role\":\"user\",\"content\":\"hi\"}]", "[{\"role\":1}]", "{}", "{\"a\":[1,{\"b\":null}]}",
        "\"\\u0000\"", "\"\\ud800\"", "\"日本\"",
    ]

    static func check(_ bytes: [UInt8], headers: [KafkaHeader] = []) {
        let record = KafkaConsumerMessage(topic: "requests", partition: 0, offset: 1, key: nil, value: bytes, headers: headers, timestamp: nil)
        do {
            let request = try RequestCodec.decode(record, limits: limits)
            #expect((1...limits.maxTokensLimit).contains(request.maxTokens))
            #expect(request.topP > 0 && request.topP <= 1 && (0...2).contains(request.temperature))
            #expect(!request.requestID.isEmpty && request.requestID.utf8.count <= limits.maxRequestIDBytes)
            #expect(request.prompt.utf8.count <= limits.maxPromptBytes)
            #expect((request.metadata?.count ?? 0) <= limits.maxMetadataBytes)
        } catch {
            #expect(codes.contains(error.code), "\(error.code): \(error.message)")
            #expect((error.requestID?.utf8.count ?? 0) <= limits.maxRequestIDBytes)
            #expect((error.correlationID?.count ?? 0) <= limits.maxHeaderBytes)
        }
    }

    @Test("arbitrary bytes")
    func arbitraryBytes() async {
        await propertyCheck(count: 2_000, input: Gen.uint8().array(of: 0...300)) { bytes in
            Self.check(bytes)
        }
    }

    @Test("objects of contract fields with extreme and mistyped values, random reply headers")
    func arbitraryObjects() async {
        let field = zip(Gen.element(of: Self.keys), Gen.element(of: Self.values))
        let header = Gen.uint8().array(of: 0...6)
        await propertyCheck(count: 3_000, input: field.array(of: 0...10), header) { pairs, partition in
            let members = pairs.map { "\"\($0.0 ?? "")\":\($0.1 ?? "null")" }
            let json = "{" + (["\"request_id\":\"r\"", "\"prompt\":\"hi\""] + members).joined(separator: ",") + "}"
            Self.check(Array(json.utf8), headers: [KafkaHeader(name: "kafka_replyPartition", value: partition)])
            Self.check(Array(("{" + members.joined(separator: ",") + "}").utf8))
        }
    }
}
