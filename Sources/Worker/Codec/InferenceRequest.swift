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
    /// The W3C trace (from `traceparent`, or started here).
    public var trace: RequestTrace
    public var conversationID: String?
    public var customerRef: String?
    public var channel: String?
    public var maxTokens: Int
    public var temperature: Float
    public var topP: Float
    public var seed: UInt64
    /// True when the request chose its seed (else it is derived from the request id).
    public var seedGiven = false
    public var deadline: Date?
    public var priority: Priority
    /// The request's `metadata` object, echoed back as raw JSON.
    public var metadata: Data?
    public var source: KafkaTopicPartitionOffset
    public var receivedAt: Date

    /// Whether its deadline has passed by `now` (never, without one).
    public func hasExpired(at now: Date = Date()) -> Bool {
        deadline.map { $0 <= now } ?? false
    }
}

/// Why a record was rejected; carries what could be recovered for the error reply.
public struct RequestRejection: Error, Sendable {
    public var code: String
    public var message: String
    public var requestID: String?
    public var replyTopic: String?
    public var replyPartition: Int32?
    public var correlationID: [UInt8]?
    public var trace: RequestTrace
}

/// Limits applied while decoding (from configuration). Each is enforced before the value
/// it bounds is used, stored or echoed.
public struct RequestLimits: Sendable {
    public var maxPromptBytes: Int
    public var defaultMaxTokens: Int
    public var maxTokensLimit: Int
    public var defaultTopic: String
    /// Topics whose requests default to `batch` priority (a request's own field wins).
    public var batchTopics: Set<String>
    /// `request_id` length in UTF-8 bytes.
    public var maxRequestIDBytes = 256
    /// `metadata`, as JSON, in bytes (it is echoed in the reply).
    public var maxMetadataBytes = 16_384
    /// Entries of `messages`.
    public var maxMessages = 64
    /// Any one header value (correlation id, reply topic, partition) in bytes.
    public var maxHeaderBytes = 1_024
    /// The free-form strings stored in the audit row (`conversation_id`, `customer_ref`, `channel`).
    public var maxFieldBytes = 256

    /// The limits `configuration` sets.
    public init(_ configuration: SluiceConfiguration) {
        let worker = configuration.worker
        self.init(maxPromptBytes: worker.maxPromptBytes, defaultMaxTokens: worker.defaultMaxTokens,
                  maxTokensLimit: worker.maxTokensLimit, defaultTopic: configuration.topics.replies, batchTopics: Set(worker.batchTopics))
    }

    public init(maxPromptBytes: Int, defaultMaxTokens: Int, maxTokensLimit: Int, defaultTopic: String, batchTopics: Set<String> = []) {
        self.maxPromptBytes = maxPromptBytes
        self.defaultMaxTokens = defaultMaxTokens
        self.maxTokensLimit = maxTokensLimit
        self.defaultTopic = defaultTopic
        self.batchTopics = batchTopics
    }
}

/// The request value as sent (contract v1), decoded with `Codable`: each field has the type
/// the contract names or the whole request is rejected with that field named.
struct RequestBody: Decodable {
    var requestID: String?
    var replyTo: String?
    var prompt: String?
    var messages: [InferenceRequest.Message]?
    var conversationID: String?
    var customerRef: String?
    var channel: String?
    var maxTokens: JSONNumber?
    var temperature: JSONNumber?
    var topP: JSONNumber?
    var seed: JSONNumber?
    var deadline: String?
    var priority: String?
    var metadata: [String: JSONValue]?

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", replyTo = "reply_to", prompt, messages
        case conversationID = "conversation_id", customerRef = "customer_ref", channel
        case maxTokens = "max_tokens", temperature, topP = "top_p", seed, deadline, priority, metadata
    }
}

/// What can be read of a request even when the rest is invalid: its id and reply topic, for
/// the error reply and the audit row.
struct RequestEnvelope: Decodable {
    var requestID: String?
    var replyTo: String?

    init(requestID: String?, replyTo: String?) {
        self.requestID = requestID
        self.replyTo = replyTo
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: RequestBody.CodingKeys.self)
        requestID = try? container.decodeIfPresent(String.self, forKey: .requestID)
        replyTo = try? container.decodeIfPresent(String.self, forKey: .replyTo)
    }
}

/// Decodes and validates request records: JSON body, headers (`correlation-id`, `reply-to`,
/// and Spring Kafka's `kafka_replyTopic`, `kafka_replyPartition`, `kafka_correlationId`).
/// Nothing a record holds can make it trap: numbers convert exactly or are rejected.
public enum RequestCodec {
    public static func decode(_ record: KafkaConsumerMessage, limits: RequestLimits, now: Date = Date()) throws(RequestRejection) -> InferenceRequest {
        var rejection = RequestRejection(
            code: "", message: "", requestID: nil, replyTopic: limits.defaultTopic, replyPartition: nil, correlationID: nil,
            trace: RequestTrace(headers: record.headers))
        func reject(_ code: String, _ message: String) -> RequestRejection {
            rejection.code = code
            rejection.message = message
            return rejection
        }
        // Headers first, each bounded before it is kept.
        let headers = record.headers
        for name in ["reply-to", "kafka_replyTopic", "kafka_replyPartition", "correlation-id", "kafka_correlationId"] {
            if let value = headers.last(named: name)?.value, value.count > limits.maxHeaderBytes {
                throw reject("invalid_header", "header \(name) has \(value.count) bytes; the limit is \(limits.maxHeaderBytes)")
            }
        }
        rejection.correlationID = headers.last(named: "correlation-id")?.value ?? headers.last(named: "kafka_correlationId")?.value
        if let topic = headers.last(named: "reply-to")?.stringValue ?? headers.last(named: "kafka_replyTopic")?.stringValue {
            rejection.replyTopic = topic
        }
        if let header = headers.last(named: "kafka_replyPartition") {
            guard let partition = header.value.flatMap(Self.int32) else {
                throw reject("invalid_header", "kafka_replyPartition must be a 4-byte big-endian or decimal integer")
            }
            rejection.replyPartition = partition
        }
        guard String(validating: record.value, as: UTF8.self) != nil else {
            throw reject("invalid_utf8", "the request value is not valid UTF-8")
        }
        let decoder = JSONDecoder()
        let data = Data(record.value)
        // One decode for a valid request; only an invalid one is read again, leniently, for the
        // id and reply topic its error reply needs.
        let decoded = Result { try decoder.decode(RequestBody.self, from: data) }
        let envelope: RequestEnvelope
        if case .success(let body) = decoded {
            envelope = RequestEnvelope(requestID: body.requestID, replyTo: body.replyTo)
        } else {
            guard let lenient = try? decoder.decode(RequestEnvelope.self, from: data) else {
                throw reject("malformed_json", "the request value is not a JSON object")
            }
            envelope = lenient
        }
        if let id = envelope.requestID, !id.isEmpty {
            guard id.utf8.count <= limits.maxRequestIDBytes else {
                throw reject("invalid_field", "request_id has \(id.utf8.count) bytes; the limit is \(limits.maxRequestIDBytes)")
            }
            rejection.requestID = id
        }
        if let reply = envelope.replyTo, !reply.isEmpty { rejection.replyTopic = reply }
        let body: RequestBody
        do {
            body = try decoded.get()
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context), let DecodingError.dataCorrupted(context) {
            throw reject("invalid_field", "\(Self.field(context.codingPath)) has the wrong type: \(Self.expectation(context.codingPath))")
        } catch {
            throw reject("invalid_field", "the request does not follow the message contract: \(error)")
        }
        guard let requestID = rejection.requestID else { throw reject("missing_field", "request_id (a non-empty string) is required") }
        for (name, value) in [("conversation_id", body.conversationID), ("customer_ref", body.customerRef), ("channel", body.channel)] {
            if let value, value.utf8.count > limits.maxFieldBytes {
                throw reject("invalid_field", "\(name) has \(value.utf8.count) bytes; the limit is \(limits.maxFieldBytes)")
            }
        }

        let prompt: String
        if let text = body.prompt {
            prompt = text
        } else if let messages = body.messages {
            guard messages.count <= limits.maxMessages else {
                throw reject("invalid_field", "messages has \(messages.count) entries; the limit is \(limits.maxMessages)")
            }
            prompt = messages.map { "\($0.role): \($0.content)" }.joined(separator: "\n")
        } else {
            throw reject("missing_field", "prompt (string) or messages ([{role, content}]) is required")
        }
        guard prompt.utf8.count <= limits.maxPromptBytes else {
            throw reject("prompt_too_large", "the prompt has \(prompt.utf8.count) bytes; the limit is \(limits.maxPromptBytes)")
        }
        guard !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw reject("invalid_field", "the prompt is empty") }

        var maxTokens = limits.defaultMaxTokens
        if let number = body.maxTokens {
            guard let value = number.signed, (1...Int64(limits.maxTokensLimit)).contains(value) else {
                throw reject("invalid_field", "max_tokens must be an integer 1...\(limits.maxTokensLimit)")
            }
            maxTokens = Int(value)
        }
        // Checked as the Float the sampler uses (4.9e-324 is a positive double and Float zero).
        let temperature = Float(body.temperature?.double ?? 0)
        guard (0...2).contains(temperature) else { throw reject("invalid_field", "temperature must be 0...2") }
        let topP = Float(body.topP?.double ?? 1)
        guard topP > 0, topP <= 1 else { throw reject("invalid_field", "top_p must be in (0, 1]") }
        var seed = Self.stableSeed(requestID)
        if let number = body.seed {
            guard let value = number.unsigned else { throw reject("invalid_field", "seed must be an integer 0...\(UInt64.max)") }
            seed = value
        }
        var deadline: Date?
        if let text = body.deadline {
            guard let parsed = RFC3339.date(from: text) else {
                throw reject("invalid_field", "deadline must be an RFC 3339 time")
            }
            deadline = parsed
        }
        let priority: InferenceRequest.Priority
        switch body.priority {
        case nil: priority = limits.batchTopics.contains(record.topic) ? .batch : .interactive
        case "interactive"?: priority = .interactive
        case "batch"?: priority = .batch
        default: throw reject("invalid_field", "priority must be interactive or batch")
        }
        var metadata: Data?
        if let object = body.metadata {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let encoded = (try? encoder.encode(object)) ?? Data("{}".utf8)
            guard encoded.count <= limits.maxMetadataBytes else {
                throw reject("invalid_field", "metadata has \(encoded.count) bytes as JSON; the limit is \(limits.maxMetadataBytes)")
            }
            metadata = encoded
        }
        return InferenceRequest(
            requestID: requestID, prompt: prompt, messages: body.messages, replyTopic: rejection.replyTopic ?? limits.defaultTopic,
            replyPartition: rejection.replyPartition, correlationID: rejection.correlationID, trace: rejection.trace, conversationID: body.conversationID,
            customerRef: body.customerRef, channel: body.channel, maxTokens: maxTokens,
            temperature: temperature, topP: topP, seed: seed, seedGiven: body.seed != nil, deadline: deadline, priority: priority,
            metadata: metadata, source: KafkaTopicPartitionOffset(topic: record.topic, partition: record.partition, offset: record.offset),
            receivedAt: now)
    }

    /// The contract field a decoding error points at (`messages[2].role`).
    private static func field(_ path: [any CodingKey]) -> String {
        guard let first = path.first else { return "the request" }
        return path.dropFirst().reduce(first.stringValue) { text, key in
            key.intValue.map { "\(text)[\($0)]" } ?? "\(text).\(key.stringValue)"
        }
    }

    /// What the contract expects at a field.
    private static func expectation(_ path: [any CodingKey]) -> String {
        switch path.first.flatMap({ RequestBody.CodingKeys(stringValue: $0.stringValue) }) {
        case .maxTokens?, .temperature?, .topP?, .seed?: "a number"
        case .messages?: "[{role, content}] with string values"
        case .metadata?: "an object"
        default: "a string"
        }
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
