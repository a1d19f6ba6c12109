import Foundation
import KafkaClient

/// A validated request, decoded from one Kafka record (message contract v1).
public struct InferenceRequest: Sendable {
    public enum Priority: String, Sendable, Codable { case interactive, batch }

    public struct Message: Sendable, Codable, Equatable {
        public var role: String
        public var content: String
    }

    public var requestID: String
    public var prompt: String
    public var messages: [Message]?
    public var replyTopic: String
    /// Spring's `kafka_replyPartition`, when the caller asked for one.
    public var replyPartition: Int32?
    /// Echoed in reply headers (`correlation-id`, and `kafka_correlationId` for Spring).
    public var correlationID: [UInt8]?
    public var conversationID: String?
    public var customerRef: String?
    public var channel: String?
    public var maxTokens: Int
    public var temperature: Float
    public var topP: Float
    public var seed: UInt64
    public var deadline: Date?
    public var priority: Priority
    /// The request's `metadata` object, echoed back as raw JSON.
    public var metadata: Data?
    public var source: KafkaTopicPartitionOffset
    public var receivedAt: Date
}

/// Why a record was rejected; carries what could be recovered for the error reply.
public struct RequestRejection: Error, Sendable {
    public var code: String
    public var message: String
    public var requestID: String?
    public var replyTopic: String?
    public var replyPartition: Int32?
    public var correlationID: [UInt8]?
}

/// Limits applied while decoding (from configuration).
public struct RequestLimits: Sendable {
    public var maxPromptBytes: Int
    public var defaultMaxTokens: Int
    public var maxTokensLimit: Int
    public var defaultTopic: String
    /// Topics whose requests default to `batch` priority (a request's own field wins).
    public var batchTopics: Set<String>

    public init(maxPromptBytes: Int, defaultMaxTokens: Int, maxTokensLimit: Int, defaultTopic: String, batchTopics: Set<String> = []) {
        self.maxPromptBytes = maxPromptBytes
        self.defaultMaxTokens = defaultMaxTokens
        self.maxTokensLimit = maxTokensLimit
        self.defaultTopic = defaultTopic
        self.batchTopics = batchTopics
    }
}

/// Decodes and validates request records: JSON body, headers (`correlation-id`, `reply-to`,
/// and Spring Kafka's `kafka_replyTopic`, `kafka_replyPartition`, `kafka_correlationId`).
public enum RequestCodec {
    public static func decode(_ record: KafkaConsumerMessage, limits: RequestLimits, now: Date = Date()) throws(RequestRejection) -> InferenceRequest {
        let headers = record.headers
        let headerReply = headers.last(named: "reply-to")?.stringValue ?? headers.last(named: "kafka_replyTopic")?.stringValue
        let replyPartition = headers.last(named: "kafka_replyPartition")?.value.flatMap(Self.int32)
        let correlation = headers.last(named: "correlation-id")?.value ?? headers.last(named: "kafka_correlationId")?.value
        var rejection = RequestRejection(
            code: "", message: "", requestID: nil, replyTopic: headerReply ?? limits.defaultTopic,
            replyPartition: replyPartition, correlationID: correlation)
        func reject(_ code: String, _ message: String) -> RequestRejection {
            rejection.code = code
            rejection.message = message
            return rejection
        }
        guard String(validating: record.value, as: UTF8.self) != nil else {
            throw reject("invalid_utf8", "the request value is not valid UTF-8")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(record.value))) as? [String: Any] else {
            throw reject("malformed_json", "the request value is not a JSON object")
        }
        if let id = object["request_id"] as? String, !id.isEmpty { rejection.requestID = id }
        if let reply = object["reply_to"] as? String, !reply.isEmpty { rejection.replyTopic = reply }
        guard let requestID = rejection.requestID else { throw reject("missing_field", "request_id (a non-empty string) is required") }
        guard requestID.utf8.count <= 256 else { throw reject("invalid_field", "request_id is longer than 256 bytes") }

        var messages: [InferenceRequest.Message]?
        let prompt: String
        if let text = object["prompt"] as? String {
            prompt = text
        } else if let list = object["messages"] as? [[String: Any]] {
            messages = []
            for item in list {
                guard let role = item["role"] as? String, let content = item["content"] as? String else {
                    throw reject("invalid_field", "messages must be [{role, content}] with string values")
                }
                messages?.append(.init(role: role, content: content))
            }
            prompt = messages?.map { "\($0.role): \($0.content)" }.joined(separator: "\n") ?? ""
        } else {
            throw reject("missing_field", "prompt (string) or messages ([{role, content}]) is required")
        }
        guard !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw reject("invalid_field", "the prompt is empty") }
        guard prompt.utf8.count <= limits.maxPromptBytes else {
            throw reject("prompt_too_large", "the prompt has \(prompt.utf8.count) bytes; the limit is \(limits.maxPromptBytes)")
        }
        func number(_ key: String) throws(RequestRejection) -> Double? {
            guard let value = object[key], !(value is NSNull) else { return nil }
            guard let number = value as? NSNumber, !(value is Bool) else { throw reject("invalid_field", "\(key) must be a number") }
            return number.doubleValue
        }
        let maxTokens = try number("max_tokens").map(Int.init) ?? limits.defaultMaxTokens
        guard (1...limits.maxTokensLimit).contains(maxTokens) else {
            throw reject("invalid_field", "max_tokens must be 1...\(limits.maxTokensLimit)")
        }
        let temperature = try number("temperature") ?? 0
        guard (0...2).contains(temperature) else { throw reject("invalid_field", "temperature must be 0...2") }
        let topP = try number("top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw reject("invalid_field", "top_p must be in (0, 1]") }
        let seed = try number("seed").map { UInt64(max(0, $0)) } ?? Self.stableSeed(requestID)
        var deadline: Date?
        if let text = object["deadline"] as? String {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let parsed = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) else {
                throw reject("invalid_field", "deadline must be an RFC 3339 time")
            }
            deadline = parsed
        }
        let priority: InferenceRequest.Priority
        switch object["priority"] as? String {
        case nil: priority = limits.batchTopics.contains(record.topic) ? .batch : .interactive
        case "interactive"?: priority = .interactive
        case "batch"?: priority = .batch
        default: throw reject("invalid_field", "priority must be interactive or batch")
        }
        let metadata = (object["metadata"] as? [String: Any]).flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
        return InferenceRequest(
            requestID: requestID, prompt: prompt, messages: messages, replyTopic: rejection.replyTopic ?? limits.defaultTopic,
            replyPartition: replyPartition, correlationID: correlation, conversationID: object["conversation_id"] as? String,
            customerRef: object["customer_ref"] as? String, channel: object["channel"] as? String, maxTokens: maxTokens,
            temperature: Float(temperature), topP: Float(topP), seed: seed, deadline: deadline, priority: priority,
            metadata: metadata, source: KafkaTopicPartitionOffset(topic: record.topic, partition: record.partition, offset: record.offset),
            receivedAt: now)
    }

    /// FNV-1a of the request id: the default seed, the same in every process (recorded in
    /// the audit row, so a sampled answer can be reproduced).
    static func stableSeed(_ text: String) -> UInt64 {
        text.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }

    /// Spring sends `kafka_replyPartition` as a 4-byte big-endian int.
    static func int32(_ bytes: [UInt8]) -> Int32? {
        if bytes.count == 4 { return Int32(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }) }
        return String(validating: bytes, as: UTF8.self).flatMap { Int32($0) }
    }
}
