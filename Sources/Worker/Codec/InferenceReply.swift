import Foundation
import KafkaClient

/// The reply to one request (message contract v1).
public struct InferenceReply: Sendable {
    public enum Status: String, Sendable { case ok, error, expired, rejected }

    public struct Usage: Sendable { public var promptTokens: Int; public var completionTokens: Int }
    public struct Timings: Sendable { public var queuedMs: Int; public var inferenceMs: Int; public var totalMs: Int }

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
    public var metadata: Data?

    /// The JSON value.
    public func encoded() -> [UInt8] {
        var object: [String: Any] = ["status": status.rawValue, "escalate": escalate, "worker": worker]
        object["request_id"] = requestID ?? NSNull()
        object["text"] = text ?? NSNull()
        object["confidence"] = confidence ?? NSNull()
        object["escalation_reason"] = escalationReason ?? NSNull()
        if let model { object["model"] = ["name": model.name, "quantization": model.quantization, "sha256": model.sha256] }
        if let usage { object["usage"] = ["prompt_tokens": usage.promptTokens, "completion_tokens": usage.completionTokens] }
        if let timings { object["timings"] = ["queued_ms": timings.queuedMs, "inference_ms": timings.inferenceMs, "total_ms": timings.totalMs] }
        if let errorCode { object["error"] = ["code": errorCode, "message": errorMessage ?? ""] }
        if let metadata, let value = try? JSONSerialization.jsonObject(with: metadata) { object["metadata"] = value }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Array(data)
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
public struct ModelIdentity: Sendable, Equatable {
    public var name: String
    public var quantization: String
    public var sha256: String

    public init(name: String, quantization: String, sha256: String) {
        self.name = name
        self.quantization = quantization
        self.sha256 = sha256
    }
}
