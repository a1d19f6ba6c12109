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
            json.key("cache")
            json.beginObject()
            json.key("hit"); json.bool(cache.hit)
            json.key("request_id"); json.string(cache.requestID)
            json.endObject()
        }
        json.key("confidence"); json.number(confidence)
        if let decision {
            json.key("decision")
            json.beginObject()
            if let value = decision.generation { json.key("generation"); json.number(value) }
            if let value = decision.retrieval { json.key("retrieval"); json.number(value) }
            if let value = decision.selection { json.key("selection"); json.number(value) }
            if let value = decision.support { json.key("support"); json.number(value) }
            if let claims = decision.unsupportedClaims { json.key("unsupported_claims"); json.strings(claims) }
            json.endObject()
        }
        if let errorCode {
            json.key("error")
            json.beginObject()
            json.key("code"); json.string(errorCode)
            json.key("message"); json.string(errorMessage ?? "")
            json.endObject()
        }
        json.key("escalate"); json.bool(escalate)
        json.key("escalation_reason"); json.string(escalationReason)
        if let escalationReasons { json.key("escalation_reasons"); json.strings(escalationReasons) }
        if let knowledge {
            json.key("knowledge")
            json.beginObject()
            json.key("passages"); json.strings(knowledge.passages)
            json.key("version"); json.string(knowledge.version)
            json.endObject()
        }
        // The codec stores metadata in this very form (sorted keys, unescaped slashes).
        if let metadata { json.key("metadata"); json.raw(metadata) }
        if let model {
            json.key("model")
            json.beginObject()
            json.key("name"); json.string(model.name)
            json.key("quantization"); json.string(model.quantization)
            json.key("sha256"); json.string(model.sha256)
            json.endObject()
        }
        if let original {
            json.key("original")
            json.beginObject()
            if let offset = original.offset { json.key("offset"); json.integer(offset) }
            if let partition = original.partition { json.key("partition"); json.integer(partition) }
            json.key("status"); json.string(original.status)
            if let topic = original.topic { json.key("topic"); json.string(topic) }
            json.endObject()
        }
        json.key("request_id"); json.string(requestID)
        json.key("status"); json.string(status.rawValue)
        json.key("text"); json.string(text)
        if let timings {
            json.key("timings")
            json.beginObject()
            json.key("inference_ms"); json.integer(timings.inferenceMs)
            json.key("queued_ms"); json.integer(timings.queuedMs)
            json.key("total_ms"); json.integer(timings.totalMs)
            json.endObject()
        }
        if let usage {
            json.key("usage")
            json.beginObject()
            json.key("completion_tokens"); json.integer(usage.completionTokens)
            json.key("prompt_tokens"); json.integer(usage.promptTokens)
            json.endObject()
        }
        json.key("worker"); json.string(worker)
        json.endObject()
        return json.bytes
    }

    /// The same value through `JSONEncoder` (the reference `encoded()` is tested against).
    public func encodedWithFoundation() -> [UInt8] {
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
