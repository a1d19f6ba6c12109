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

    /// The JSON value: the bytes `JSONEncoder` (sorted keys, unescaped slashes) makes of
    /// ``encode(to:)``, written directly (`JSONWriterTests` compares the two).
    public func encoded() -> [UInt8] {
        var json = JSONWriter(capacity: 256 + (text?.utf8.count ?? 0) + (metadata?.count ?? 0))
        json.beginObject()
        if let cache {
            json.object("cache") { fields in
                fields.key("hit"); fields.bool(cache.hit)
                fields.key("request_id"); fields.string(cache.requestID)
            }
        }
        json.key("confidence"); json.number(confidence)
        if let decision {
            json.object("decision") { fields in
                if let value = decision.generation { fields.key("generation"); fields.number(value) }
                if let value = decision.retrieval { fields.key("retrieval"); fields.number(value) }
                if let value = decision.selection { fields.key("selection"); fields.number(value) }
                if let value = decision.support { fields.key("support"); fields.number(value) }
                if let claims = decision.unsupportedClaims { fields.key("unsupported_claims"); fields.strings(claims) }
            }
        }
        if let errorCode {
            json.object("error") { fields in
                fields.key("code"); fields.string(errorCode)
                fields.key("message"); fields.string(errorMessage ?? "")
            }
        }
        json.key("escalate"); json.bool(escalate)
        json.key("escalation_reason"); json.string(escalationReason)
        if let escalationReasons { json.key("escalation_reasons"); json.strings(escalationReasons) }
        if let knowledge {
            json.object("knowledge") { fields in
                fields.key("passages"); fields.strings(knowledge.passages)
                fields.key("version"); fields.string(knowledge.version)
            }
        }
        // The codec stores metadata in this very form (sorted keys, unescaped slashes).
        if let metadata { json.key("metadata"); json.raw(metadata) }
        if let model {
            json.object("model") { fields in
                fields.key("name"); fields.string(model.name)
                fields.key("quantization"); fields.string(model.quantization)
                fields.key("sha256"); fields.string(model.sha256)
            }
        }
        if let original {
            json.object("original") { fields in
                if let offset = original.offset { fields.key("offset"); fields.integer(offset) }
                if let partition = original.partition { fields.key("partition"); fields.integer(partition) }
                fields.key("status"); fields.string(original.status)
                if let topic = original.topic { fields.key("topic"); fields.string(topic) }
            }
        }
        json.key("request_id"); json.string(requestID)
        json.key("status"); json.string(status.rawValue)
        json.key("text"); json.string(text)
        if let timings {
            json.object("timings") { fields in
                fields.key("inference_ms"); fields.integer(timings.inferenceMs)
                fields.key("queued_ms"); fields.integer(timings.queuedMs)
                fields.key("total_ms"); fields.integer(timings.totalMs)
            }
        }
        if let usage {
            json.object("usage") { fields in
                fields.key("completion_tokens"); fields.integer(usage.completionTokens)
                fields.key("prompt_tokens"); fields.integer(usage.promptTokens)
            }
        }
        json.key("worker"); json.string(worker)
        json.endObject()
        return json.bytes
    }

    /// The same value through `JSONEncoder` (the reference `encoded()` is tested against).
    func encodedWithFoundation() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }

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
