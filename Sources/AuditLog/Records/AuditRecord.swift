import Foundation
import GRDB

/// One stored audit row: what was asked, what was answered, by which model, how fast, and
/// where it sits in the hash chain. Text fields are PII-masked before they get here.
public struct AuditRecord: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable, Codable { case ok, error, expired, rejected }
    public enum Route: String, Sendable, CaseIterable, Codable { case auto, escalated }

    /// Position in the chain (1, 2, …); assigned on append.
    public var seq: Int64 = 0
    public var requestID: String
    public var conversationID: String?
    /// HMAC-SHA256 pseudonym of the customer reference (never the reference itself).
    public var customerPseudonym: String?
    public var channel: String?
    public var topic: String?
    public var partition: Int64?
    public var offset: Int64?
    public var receivedAt: Date
    public var startedAt: Date?
    public var completedAt: Date
    public var queueMs: Int64?
    public var inferenceMs: Int64?
    public var modelName: String?
    public var modelQuantization: String?
    public var modelSHA256: String?
    public var promptTemplateVersion: String?
    /// Sampling parameters as canonical JSON, e.g. `{"max_tokens":128,"temperature":0}`.
    public var samplingParameters: String?
    public var seed: Int64?
    public var promptMasked: String
    /// SHA-256 (hex) of the original, unmasked prompt.
    public var promptSHA256: String
    /// The original prompt sealed with AES-GCM (nonce + ciphertext + tag), when a sealing
    /// key is configured.
    public var promptSealed: Data?
    public var responseMasked: String?
    public var promptTokens: Int64?
    public var completionTokens: Int64?
    public var confidence: Double?
    public var confidenceMethod: String?
    public var confidenceThreshold: Double?
    public var route: Route
    public var escalationReason: String?
    public var status: Status
    public var errorCode: String?
    public var errorMessage: String?
    public var workerID: String
    /// Where the reply went (schema v2): the reply topic, and the partition when the request
    /// named one.
    public var replyTopic: String?
    public var replyPartition: Int64?
    /// Grounding (schema v3): the knowledge version the answer was grounded in, the passage
    /// ids (JSON array), every escalation reason that held (JSON array) and the decision's
    /// parts (JSON object: retrieval, generation, support, unsupported_claims).
    public var knowledgeVersion: String?
    public var knowledgePassages: String?
    public var escalationReasons: String?
    public var decisionParts: String?
    /// The W3C trace id (32 hex digits) the request was processed under (schema v4): the
    /// producer's when it sent a `traceparent` header, else one the worker started.
    public var traceID: String?
    /// Schema v5: set when the answer was reused from the answer cache — the request id of
    /// the audited answer it reused (that row holds the inference).
    public var cachedFrom: String?
    /// When the row was committed (the append transaction's date).
    public var recordedAt: Date = Date(timeIntervalSince1970: 0)
    public var prevHash: String = ""
    public var rowHash: String = ""
}

extension AuditRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "audit_records"

    /// Every column but the two hashes, in chain order: the canonical serialisation hashes
    /// exactly these, so storage and hashing cannot drift apart. Columns added after v1
    /// (`addedFields`) follow `prev_hash` and are hashed only when they hold a value, so a
    /// row written before they existed serialises as it did then.
    var chainedFields: [(String, CanonicalValue)] {
        baseFields + addedFields.filter { $0.1.databaseValue != nil }
    }

    /// The chained fields an append knows before it takes the write lock — every base field
    /// but `seq` (the first) and `recorded_at`, `prev_hash` (the last two) — and the added
    /// fields (all of them: the chain skips those without a value, the insert writes them).
    var lockIndependentFields: (base: ArraySlice<(String, CanonicalValue)>, added: [(String, CanonicalValue)]) {
        let base = baseFields
        return (base[1..<(base.count - 2)], addedFields)
    }

    /// Every stored column but `row_hash`, in table order (what an insert writes).
    var storedFields: [(String, CanonicalValue)] { baseFields + addedFields }

    static let addedFieldNames: Set<String> = [
        "reply_topic", "reply_partition", "knowledge_version", "knowledge_passages", "escalation_reasons", "decision_parts", "trace_id", "cached_from",
    ]

    private var addedFields: [(String, CanonicalValue)] {
        [
            ("reply_topic", .text(replyTopic)), ("reply_partition", .integer(replyPartition)),
            ("knowledge_version", .text(knowledgeVersion)), ("knowledge_passages", .text(knowledgePassages)),
            ("escalation_reasons", .text(escalationReasons)), ("decision_parts", .text(decisionParts)),
            ("trace_id", .text(traceID)), ("cached_from", .text(cachedFrom)),
        ]
    }

    private var baseFields: [(String, CanonicalValue)] {
        [
            ("seq", .integer(seq)),
            ("request_id", .text(requestID)),
            ("conversation_id", .text(conversationID)),
            ("customer_pseudonym", .text(customerPseudonym)),
            ("channel", .text(channel)),
            ("topic", .text(topic)),
            ("partition", .integer(partition)),
            ("offset", .integer(offset)),
            ("received_at", .time(receivedAt)),
            ("started_at", .time(startedAt)),
            ("completed_at", .time(completedAt)),
            ("queue_ms", .integer(queueMs)),
            ("inference_ms", .integer(inferenceMs)),
            ("model_name", .text(modelName)),
            ("model_quantization", .text(modelQuantization)),
            ("model_sha256", .text(modelSHA256)),
            ("prompt_template_version", .text(promptTemplateVersion)),
            ("sampling_parameters", .text(samplingParameters)),
            ("seed", .integer(seed)),
            ("prompt_masked", .text(promptMasked)),
            ("prompt_sha256", .text(promptSHA256)),
            ("prompt_sealed", .blob(promptSealed)),
            ("response_masked", .text(responseMasked)),
            ("prompt_tokens", .integer(promptTokens)),
            ("completion_tokens", .integer(completionTokens)),
            ("confidence", .real(confidence)),
            ("confidence_method", .text(confidenceMethod)),
            ("confidence_threshold", .real(confidenceThreshold)),
            ("route", .text(route.rawValue)),
            ("escalation_reason", .text(escalationReason)),
            ("status", .text(status.rawValue)),
            ("error_code", .text(errorCode)),
            ("error_message", .text(errorMessage)),
            ("worker_id", .text(workerID)),
            ("recorded_at", .time(recordedAt)),
            ("prev_hash", .text(prevHash)),
        ]
    }

    public func encode(to container: inout PersistenceContainer) {
        for (name, value) in storedFields { container[name] = value.databaseValue }
        container["row_hash"] = rowHash
    }

    public init(row: Row) throws {
        func time(_ column: String) throws -> Date {
            guard let date = CanonicalTime.parse(row[column]) else {
                throw AuditError(code: .corrupt, message: "audit row \(row["seq"] ?? "?"): bad time in \(column)")
            }
            return date
        }
        seq = row["seq"]
        requestID = row["request_id"]
        conversationID = row["conversation_id"]
        customerPseudonym = row["customer_pseudonym"]
        channel = row["channel"]
        topic = row["topic"]
        partition = row["partition"]
        offset = row["offset"]
        receivedAt = try time("received_at")
        startedAt = (row["started_at"] as String?).flatMap(CanonicalTime.parse)
        completedAt = try time("completed_at")
        queueMs = row["queue_ms"]
        inferenceMs = row["inference_ms"]
        modelName = row["model_name"]
        modelQuantization = row["model_quantization"]
        modelSHA256 = row["model_sha256"]
        promptTemplateVersion = row["prompt_template_version"]
        samplingParameters = row["sampling_parameters"]
        seed = row["seed"]
        promptMasked = row["prompt_masked"]
        promptSHA256 = row["prompt_sha256"]
        promptSealed = row["prompt_sealed"]
        responseMasked = row["response_masked"]
        promptTokens = row["prompt_tokens"]
        completionTokens = row["completion_tokens"]
        confidence = row["confidence"]
        confidenceMethod = row["confidence_method"]
        confidenceThreshold = row["confidence_threshold"]
        route = Route(rawValue: row["route"] ?? "") ?? .auto
        escalationReason = row["escalation_reason"]
        status = Status(rawValue: row["status"] ?? "") ?? .error
        errorCode = row["error_code"]
        errorMessage = row["error_message"]
        workerID = row["worker_id"]
        replyTopic = row["reply_topic"]
        replyPartition = row["reply_partition"]
        knowledgeVersion = row["knowledge_version"]
        knowledgePassages = row["knowledge_passages"]
        escalationReasons = row["escalation_reasons"]
        decisionParts = row["decision_parts"]
        traceID = row["trace_id"]
        cachedFrom = row["cached_from"]
        recordedAt = try time("recorded_at")
        prevHash = row["prev_hash"]
        rowHash = row["row_hash"]
    }

    /// A record's metadata as the worker hands it over. The prompt, response and customer
    /// fields are filled from the raw values of an ``AuditEntry`` when it is appended.
    public init(
        requestID: String,
        receivedAt: Date,
        completedAt: Date,
        route: Route,
        status: Status,
        workerID: String
    ) {
        self.requestID = requestID
        self.receivedAt = receivedAt
        self.completedAt = completedAt
        self.promptMasked = ""
        self.promptSHA256 = ""
        self.route = route
        self.status = status
        self.workerID = workerID
    }
}

/// What the worker hands to the audit log: the record's metadata plus the raw texts, which
/// are masked, hashed, pseudonymised (and optionally sealed) before anything is stored.
public struct AuditEntry: Sendable {
    public var record: AuditRecord
    /// The customer's original prompt.
    public var prompt: String
    /// The answer as sent, or nil when none was produced.
    public var response: String?
    /// The customer reference as received (stored only as its HMAC pseudonym).
    public var customerRef: String?

    public init(record: AuditRecord, prompt: String, response: String?, customerRef: String?) {
        self.record = record
        self.prompt = prompt
        self.response = response
        self.customerRef = customerRef
    }
}
