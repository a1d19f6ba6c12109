import AuditLog
import Foundation
import Inference
import KafkaClient

/// What a request's end is written as: the reply its producer gets and the audit row the
/// auditor reads, built from the same facts so the two cannot disagree. Pure: no broker, no
/// database, so every kind of end is testable on its own.
public struct RequestRecords: Sendable {
    /// The model named in replies and audit rows.
    public var model: ModelIdentity
    public var workerID: String
    public var templateVersion: String
    /// `grounded_v1` with a knowledge base, else the token-probability method.
    public var confidenceMethod: String
    public var confidenceThreshold: Double

    public init(model: ModelIdentity, workerID: String, templateVersion: String, confidenceMethod: String, confidenceThreshold: Double) {
        self.model = model
        self.workerID = workerID
        self.templateVersion = templateVersion
        self.confidenceMethod = confidenceMethod
        self.confidenceThreshold = confidenceThreshold
    }

    /// A request that went through planning (and the model, when it needed it). `decision` is
    /// the escalation decision of a completed or model-free answer, nil for an expired or
    /// failed one.
    public func answered(_ request: InferenceRequest, _ outcome: ScheduledJob.Outcome, decision: AnswerDecision?,
                         now: Date = Date()) -> (reply: InferenceReply, record: AuditRecord) {
        var reply = InferenceReply(requestID: request.requestID, status: .ok, escalate: false, model: model, worker: workerID, metadata: request.metadata)
        var record = AuditRecord(requestID: request.requestID, receivedAt: request.receivedAt, completedAt: now, route: .auto, status: .ok, workerID: workerID)
        switch outcome {
        case .completed(let completion, let startedAt):
            if let decision {
                apply(decision, to: request, usage: (completion.promptTokens, completion.completionTokens), startedAt: startedAt, now: now,
                      reply: &reply, record: &record)
            }
        case .answeredWithoutModel(let startedAt):
            if let decision { apply(decision, to: request, usage: nil, startedAt: startedAt, now: now, reply: &reply, record: &record) }
        case .expired:
            reply.status = .expired
            reply.errorCode = "deadline_exceeded"
            reply.errorMessage = "the deadline passed before inference started"
            record.status = .expired
            record.errorCode = "deadline_exceeded"
        case .failed(let error, let startedAt):
            reply.status = .error
            reply.errorCode = "inference_failed"
            reply.errorMessage = error.message
            record.startedAt = startedAt
            record.status = .error
            record.errorCode = "inference_failed"
            record.errorMessage = error.message
        }
        fill(&record, from: request)
        return (reply, record)
    }

    /// A request answered from the answer cache: no model time; the reply and the row name the
    /// request whose answer was reused. `decision` carries the rules and threshold as now.
    public func fromCache(_ request: InferenceRequest, _ hit: AnswerCache.Entry, decision: AnswerDecision,
                          now: Date = Date()) -> (reply: InferenceReply, record: AuditRecord) {
        var reply = InferenceReply(requestID: request.requestID, status: .ok, escalate: false, model: model, worker: workerID, metadata: request.metadata)
        var record = AuditRecord(requestID: request.requestID, receivedAt: request.receivedAt, completedAt: now, route: .auto, status: .ok, workerID: workerID)
        apply(decision, to: request, usage: (0, 0), startedAt: now, now: now, reply: &reply, record: &record)
        reply.cache = .init(hit: true, requestID: hit.requestID)
        record.cachedFrom = hit.requestID
        fill(&record, from: request)
        return (reply, record)
    }

    /// A request id already answered from another record: the reply names the original; the
    /// row goes under this record's position.
    public func duplicate(_ request: InferenceRequest, original: AuditRecord, now: Date = Date()) -> (reply: InferenceReply, record: AuditRecord) {
        var reply = InferenceReply(
            requestID: request.requestID, status: .duplicate, escalate: false, worker: workerID,
            errorCode: "duplicate_request_id", errorMessage: "request_id \(request.requestID) was already answered", metadata: request.metadata)
        reply.original = .init(topic: original.topic, partition: original.partition, offset: original.offset, status: original.status.rawValue)
        var record = AuditRecord(requestID: Self.positionKey(request.requestID, request.source), receivedAt: request.receivedAt, completedAt: now,
                                 route: .auto, status: .rejected, workerID: workerID)
        fill(&record, from: request)
        record.errorCode = "duplicate_request_id"
        record.errorMessage = "already answered from \(original.topic ?? "?"):\(original.partition ?? -1):\(original.offset ?? -1) (\(original.status.rawValue))"
        return (reply, record)
    }

    /// The error reply of a record that cannot be answered.
    public func rejectionReply(_ rejection: RequestRejection) -> InferenceReply {
        InferenceReply(requestID: rejection.requestID, status: .rejected, escalate: false, worker: workerID,
                       errorCode: rejection.code, errorMessage: rejection.message)
    }

    /// The audit row of a record that cannot be answered, keyed by its position (a redelivered
    /// record finds its row; a corrected resend under the same request id is still answered).
    /// `notes` are the failures met on the way (error reply, dead-letter copy).
    public func rejected(_ rejection: RequestRejection, at position: RecordPosition, notes: [String],
                         repliedTo: (topic: String, partition: Int32?)?, now: Date = Date()) -> AuditRecord {
        var record = AuditRecord(requestID: Self.positionKey(rejection.requestID, position), receivedAt: now, completedAt: now,
                                 route: .auto, status: .rejected, workerID: workerID)
        record.topic = position.topic
        record.partition = Int64(position.partition)
        record.offset = position.offset
        record.errorCode = rejection.code
        record.errorMessage = ([rejection.message] + notes).joined(separator: "; ")
        record.replyTopic = repliedTo?.topic
        record.replyPartition = repliedTo?.partition.map(Int64.init)
        record.traceID = rejection.trace.traceID
        return record
    }

    /// The row of a request answered twice at once (its request id also ended under another
    /// record, neither audited when the other arrived): this one goes under its own position.
    public func answeredTwice(_ record: AuditRecord, of request: InferenceRequest, stored: AuditRecord) -> AuditRecord {
        var own = record
        own.requestID = Self.positionKey(request.requestID, request.source)
        own.errorCode = own.errorCode ?? "duplicate_request_id"
        own.errorMessage = (own.errorMessage.map { $0 + "; " } ?? "") + "answered twice: request id also in \(stored.topic ?? "?"):\(stored.partition ?? -1):\(stored.offset ?? -1)"
        return own
    }

    /// Where a record sits: topic, partition, offset.
    public typealias RecordPosition = (topic: String, partition: Int32, offset: Int64)

    /// The audit key of a record ended without an answer of its own: request id @ topic:partition:offset.
    public static func positionKey(_ requestID: String?, _ position: RecordPosition) -> String {
        "\(requestID ?? "-")@\(position.topic):\(position.partition):\(position.offset)"
    }

    static func positionKey(_ requestID: String?, _ source: KafkaTopicPartitionOffset) -> String {
        positionKey(requestID, (source.topic, source.partition, source.offset))
    }

    /// Fills the reply and the audit row with the escalation decision.
    func apply(_ decision: AnswerDecision, to request: InferenceRequest, usage: (prompt: Int, completion: Int)?, startedAt: Date, now: Date,
               reply: inout InferenceReply, record: inout AuditRecord) {
        reply.text = decision.text
        reply.confidence = decision.confidence
        reply.escalate = decision.escalate
        reply.escalationReason = decision.reason
        reply.usage = .init(promptTokens: usage?.prompt ?? 0, completionTokens: usage?.completion ?? 0)
        reply.timings = .init(queuedMs: Int(startedAt.timeIntervalSince(request.receivedAt) * 1000),
                              inferenceMs: Int(now.timeIntervalSince(startedAt) * 1000),
                              totalMs: Int(now.timeIntervalSince(request.receivedAt) * 1000))
        record.startedAt = startedAt
        record.promptTokens = usage.map { Int64($0.prompt) }
        record.completionTokens = usage.map { Int64($0.completion) }
        record.confidence = decision.confidence
        record.route = decision.escalate ? .escalated : .auto
        record.escalationReason = decision.reason
        if let version = decision.knowledgeVersion {
            reply.knowledge = .init(version: version, passages: decision.passageIDs)
            reply.escalationReasons = decision.reasons
            reply.decision = decision.parts
            record.knowledgeVersion = version
            record.knowledgePassages = Self.canonicalJSON(decision.passageIDs)
            record.escalationReasons = Self.canonicalJSON(decision.reasons)
            record.decisionParts = Self.canonicalJSON(decision.parts)
        }
    }

    /// The request's own facts: its record, reply destination, trace, model and sampling.
    func fill(_ record: inout AuditRecord, from request: InferenceRequest) {
        record.conversationID = request.conversationID
        record.channel = request.channel
        record.topic = request.source.topic
        record.partition = Int64(request.source.partition)
        record.offset = request.source.offset
        record.replyTopic = request.replyTopic
        record.replyPartition = request.replyPartition.map(Int64.init)
        record.traceID = request.trace.traceID
        record.modelName = model.name
        record.modelQuantization = model.quantization
        record.modelSHA256 = model.sha256
        record.promptTemplateVersion = templateVersion
        record.samplingParameters = "{\"max_tokens\":\(request.maxTokens),\"temperature\":\(request.temperature),\"top_p\":\(request.topP)}"
        record.seed = Int64(bitPattern: request.seed)
        record.confidenceMethod = confidenceMethod
        record.confidenceThreshold = confidenceThreshold
        if let started = record.startedAt {
            record.queueMs = Int64(started.timeIntervalSince(request.receivedAt) * 1000)
            record.inferenceMs = Int64(record.completedAt.timeIntervalSince(started) * 1000)
        }
    }

    /// Canonical JSON (sorted keys) for the audit row's grounding columns.
    static func canonicalJSON(_ value: some Encodable) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }
}
