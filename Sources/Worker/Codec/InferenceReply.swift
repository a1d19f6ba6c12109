import Foundation
import KafkaClient

/// The reply to one request (message contract v1), encoded with `Codable`.
public struct InferenceReply: Sendable, Encodable {
    public enum Status: String, Sendable, Encodable {
        case ok, error, expired, rejected
        /// The request id was already answered from another record (a client retry under a new
        /// record): the reply names that record and its outcome instead of answering again.
        case duplicate
    }

    public struct Usage: Sendable, Encodable {
        public var promptTokens: Int
        public var completionTokens: Int
        enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens" }
    }
    public struct Timings: Sendable, Encodable {
        public var queuedMs: Int
        public var inferenceMs: Int
        public var totalMs: Int
        enum CodingKeys: String, CodingKey { case queuedMs = "queued_ms", inferenceMs = "inference_ms", totalMs = "total_ms" }
    }
    /// For `duplicate`: where the request id was first answered, and how.
    public struct Original: Sendable, Encodable, Equatable {
        public var topic: String?
        public var partition: Int64?
        public var offset: Int64?
        public var status: String
    }

    public var requestID: String?
    public var status: Status
    public var text: String?
    public var confidence: Double?
    public var escalate: Bool
    public var escalationReason: String?
    public var model: ModelIdentity?
    public var usage: Usage?
    public var timings: Timings?
    public var worker: String
    public var errorCode: String?
    public var errorMessage: String?
    /// The request's metadata object as JSON (decoded and bounded by the codec).
    public var metadata: Data?
    public var original: Original?
    /// What the answer was grounded in: the knowledge version and the passage ids.
    public var knowledge: KnowledgeReference?
    /// Every escalation reason that held (`escalation_reason` is the first).
    public var escalationReasons: [String]?
    /// The parts the decision and the calibrated confidence were built from.
    public var decision: DecisionParts?
    /// Set when the answer was reused from the answer cache: the request that produced it.
    public var cache: CacheReference?

    public struct CacheReference: Sendable, Encodable, Equatable {
        public var hit: Bool
        public var requestID: String
        enum CodingKeys: String, CodingKey { case hit, requestID = "request_id" }
    }

    public struct KnowledgeReference: Sendable, Encodable, Equatable {
        public var version: String
        public var passages: [String]
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", status, text, confidence, escalate, escalationReason = "escalation_reason"
        case model, usage, timings, worker, error, metadata, original, knowledge
        case escalationReasons = "escalation_reasons", decision, cache
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // The contract's always-present fields are null rather than absent.
        try container.encode(requestID, forKey: .requestID)
        try container.encode(status, forKey: .status)
        try container.encode(text, forKey: .text)
        try container.encode(confidence, forKey: .confidence)
        try container.encode(escalate, forKey: .escalate)
        try container.encode(escalationReason, forKey: .escalationReason)
        try container.encode(worker, forKey: .worker)
        try container.encodeIfPresent(model, forKey: .model)
        try container.encodeIfPresent(usage, forKey: .usage)
        try container.encodeIfPresent(timings, forKey: .timings)
        if let errorCode { try container.encode(["code": errorCode, "message": errorMessage ?? ""], forKey: .error) }
        if let metadata, let value = try? JSONDecoder().decode(JSONValue.self, from: metadata) {
            try container.encode(value, forKey: .metadata)
        }
        try container.encodeIfPresent(original, forKey: .original)
        try container.encodeIfPresent(knowledge, forKey: .knowledge)
        try container.encodeIfPresent(escalationReasons, forKey: .escalationReasons)
        try container.encodeIfPresent(decision, forKey: .decision)
        try container.encodeIfPresent(cache, forKey: .cache)
    }

    /// The JSON value.
    public func encoded() -> [UInt8] {
        Array((try? Self.encoder.encode(self)) ?? Data())
    }

    /// One configured encoder for every reply (configuring one per reply showed in the profile).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Headers that let callers match the reply: `correlation-id`, Spring's
    /// `kafka_correlationId`, and the request id.
    public static func headers(correlationID: [UInt8]?, requestID: String?) -> [KafkaHeader] {
        var headers: [KafkaHeader] = []
        if let correlationID {
            headers.append(KafkaHeader(name: "correlation-id", value: correlationID))
            headers.append(KafkaHeader(name: "kafka_correlationId", value: correlationID))
        }
        if let requestID { headers.append(KafkaHeader(name: "request-id", string: requestID)) }
        return headers
    }
}

/// Which model answered (name, quantization, file SHA-256) — in replies and audit rows.
public struct ModelIdentity: Sendable, Equatable, Encodable {
    public var name: String
    public var quantization: String
    public var sha256: String

    public init(name: String, quantization: String, sha256: String) {
        self.name = name
        self.quantization = quantization
        self.sha256 = sha256
    }
}
