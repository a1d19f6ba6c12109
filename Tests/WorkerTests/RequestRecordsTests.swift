import AuditLog
import Foundation
import Inference
import KafkaClient
import Testing
@testable import Worker

/// The reply and the audit row of every kind of end, built without a broker or a database:
/// the two must say the same thing, and the row must carry what the auditor replays with.
@Suite("Request records (unit)")
struct RequestRecordsTests {
    static let model = ModelIdentity(name: "gemma", quantization: "Q4_K_M", sha256: "ab12")
    static let records = RequestRecords(model: model, workerID: "w1", templateVersion: "tpl-7", confidenceMethod: "grounded_v1",
                                        confidenceThreshold: 0.7)
    static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    static func request(_ json: String = #"{"request_id":"r-1","prompt":"What is the card fee?","conversation_id":"c-9","channel":"app","max_tokens":32,"seed":5}"#) throws -> InferenceRequest {
        let message = KafkaConsumerMessage(topic: "requests", partition: 2, offset: 41, key: nil, value: Array(json.utf8),
                                           headers: [KafkaHeader(name: "traceparent", string: traceparent)], timestamp: nil)
        return try RequestCodec.decode(message, limits: RequestLimits(maxPromptBytes: 1000, defaultMaxTokens: 8, maxTokensLimit: 64, defaultTopic: "replies"))
    }

    static let decision = AnswerDecision(
        text: "The annual fee is 100 yuan.", confidence: 0.62, reasons: ["low_confidence"],
        parts: DecisionParts(retrieval: 0.9, generation: 0.5, selection: 0.55), knowledgeVersion: "kb-1", passageIDs: ["fees", "cards"])

    @Test("a completed answer: reply and row agree on text, confidence, route, reason and tokens; the row names model, template, trace and record")
    func completed() throws {
        let request = try Self.request()
        let started = request.receivedAt.addingTimeInterval(0.25)
        let now = started.addingTimeInterval(1.5)
        let completion = Completion(text: "ignored: the decision's text is what goes out", tokens: [1, 2, 3], confidence: 0.5,
                                    minTokenProbability: 0.1, promptTokens: 40, finishReason: .choice, timeToFirstToken: nil)
        let (reply, record) = Self.records.answered(request, .completed(completion, startedAt: started), decision: Self.decision, now: now)
        #expect(reply.status == .ok && record.status == .ok)
        #expect(reply.text == Self.decision.text)
        #expect(reply.confidence == 0.62 && record.confidence == 0.62)
        #expect(reply.escalate && record.route == .escalated)
        #expect(reply.escalationReason == "low_confidence" && record.escalationReason == "low_confidence")
        #expect(reply.usage?.promptTokens == 40 && reply.usage?.completionTokens == 3)
        #expect(record.promptTokens == 40 && record.completionTokens == 3)
        #expect(reply.timings?.queuedMs == 250 && reply.timings?.inferenceMs == 1500 && record.queueMs == 250 && record.inferenceMs == 1500)
        #expect(reply.knowledge?.version == "kb-1" && record.knowledgeVersion == "kb-1")
        #expect(record.knowledgePassages == #"["fees","cards"]"#)
        #expect(record.decisionParts == #"{"generation":0.5,"retrieval":0.9,"selection":0.55}"#)  // sorted keys
        #expect(record.topic == "requests" && record.partition == 2 && record.offset == 41)
        #expect(record.modelSHA256 == "ab12" && record.modelName == "gemma" && record.promptTemplateVersion == "tpl-7")
        #expect(record.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(record.samplingParameters == #"{"max_tokens":32,"temperature":0.0,"top_p":1.0}"#)
        #expect(record.seed == 5 && record.confidenceThreshold == 0.7 && record.confidenceMethod == "grounded_v1")
        #expect(record.conversationID == "c-9" && record.channel == "app" && record.replyTopic == "replies")
        #expect(record.workerID == "w1" && reply.worker == "w1" && reply.model == Self.model)
    }

    @Test("expired and failed requests: the same status and code in reply and row, no answer, no confidence")
    func expiredAndFailed() throws {
        let request = try Self.request()
        let (expiredReply, expiredRow) = Self.records.answered(request, .expired, decision: nil)
        #expect(expiredReply.status == .expired && expiredRow.status == .expired)
        #expect(expiredReply.errorCode == "deadline_exceeded" && expiredRow.errorCode == "deadline_exceeded")
        #expect(expiredReply.text == nil && expiredRow.confidence == nil && expiredRow.startedAt == nil && expiredRow.queueMs == nil)

        let error = InferenceError(.invalidRequest, "the prompt does not fit")
        let started = request.receivedAt.addingTimeInterval(0.1)
        let (failedReply, failedRow) = Self.records.answered(request, .failed(error, startedAt: started), decision: nil)
        #expect(failedReply.status == .error && failedRow.status == .error)
        #expect(failedReply.errorCode == "inference_failed" && failedRow.errorCode == "inference_failed")
        #expect(failedRow.errorMessage == error.message && failedReply.errorMessage == error.message)
        #expect(failedRow.startedAt == started && failedRow.route == .auto)
    }

    @Test("a cache hit names the reused request in reply and row, spends no tokens, and carries the decision made now")
    func cacheHit() throws {
        let request = try Self.request()
        let hit = AnswerCache.Entry(requestID: "r-0", text: Self.decision.text, confidence: 0.91, parts: Self.decision.parts,
                                    knowledgeVersion: "kb-1", passageIDs: ["fees"], promptTokens: 40, completionTokens: 9)
        var now = Self.decision
        now.reasons = ["complaint"]
        let (reply, record) = Self.records.fromCache(request, hit, decision: now)
        #expect(reply.cache?.hit == true && reply.cache?.requestID == "r-0" && record.cachedFrom == "r-0")
        #expect(reply.usage?.promptTokens == 0 && reply.usage?.completionTokens == 0 && record.completionTokens == 0)
        #expect(reply.escalationReason == "complaint" && record.route == .escalated)
        #expect(record.requestID == "r-1" && record.offset == 41)
    }

    @Test("rejections and duplicates are keyed by the record's position; a rejection's row lists the failures met")
    func rejectionsAndDuplicates() throws {
        let rejection = RequestRejection(code: "malformed_json", message: "not JSON", requestID: nil, replyTopic: "replies",
                                         replyPartition: nil, correlationID: nil, trace: try Self.request().trace)
        let row = Self.records.rejected(rejection, at: ("requests", 1, 9), notes: ["dead-letter copy failed: timeout"], repliedTo: ("replies", nil))
        #expect(row.requestID == "-@requests:1:9" && row.status == .rejected && row.errorCode == "malformed_json")
        #expect(row.errorMessage == "not JSON; dead-letter copy failed: timeout")
        #expect(row.replyTopic == "replies" && row.replyPartition == nil && row.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(Self.records.rejectionReply(rejection).status == .rejected && Self.records.rejectionReply(rejection).errorCode == "malformed_json")

        let request = try Self.request()
        var original = AuditRecord(requestID: "r-1", receivedAt: Date(), completedAt: Date(), route: .auto, status: .ok, workerID: "w0")
        (original.topic, original.partition, original.offset) = ("requests", 0, 3)
        let (reply, record) = Self.records.duplicate(request, original: original)
        #expect(reply.status == .duplicate && reply.original?.offset == 3 && reply.original?.status == "ok")
        #expect(record.requestID == "r-1@requests:2:41" && record.errorCode == "duplicate_request_id")
        #expect(record.errorMessage == "already answered from requests:0:3 (ok)")

        let twice = Self.records.answeredTwice(Self.records.answered(request, .expired, decision: nil).record, of: request, stored: original)
        #expect(twice.requestID == "r-1@requests:2:41" && twice.errorCode == "deadline_exceeded")
        #expect(twice.errorMessage == "answered twice: request id also in requests:0:3")
    }
}
