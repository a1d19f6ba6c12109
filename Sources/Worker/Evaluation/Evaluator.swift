import Foundation
import Inference
import KafkaClient
import Knowledge

/// Runs an eval set through the worker's own path — the request codec, ``AnswerPipeline``
/// (retrieval, grounded prompt, decision) and a ``ContinuousBatchScheduler`` over the model —
/// with every case in flight at once, so they batch as a burst of traffic would.
public struct Evaluator: Sendable {
    public let pipeline: AnswerPipeline
    public let scheduler: ContinuousBatchScheduler
    public let limits: RequestLimits

    public init(pipeline: AnswerPipeline, scheduler: ContinuousBatchScheduler, limits: RequestLimits) {
        self.pipeline = pipeline
        self.scheduler = scheduler
        self.limits = limits
    }

    /// One result per case, in the set's order.
    public func run(_ cases: [EvalCase]) async throws -> [EvalResult] {
        try await withThrowingTaskGroup(of: (Int, EvalResult).self) { group in
            for (index, evalCase) in cases.enumerated() {
                group.addTask { (index, try await self.answer(evalCase, index: index)) }
            }
            var results = [EvalResult?](repeating: nil, count: cases.count)
            for try await (index, result) in group { results[index] = result }
            return results.compactMap { $0 }
        }
    }

    /// What the model is asked for `evalCase` (the worker's plan of the same request).
    public func plan(_ evalCase: EvalCase, index: Int) throws -> AnswerPlan {
        try pipeline.plan(request(evalCase, index: index))
    }

    /// The request a producer would send for `evalCase`, decoded as the worker decodes it.
    func request(_ evalCase: EvalCase, index: Int) throws -> InferenceRequest {
        var body: [String: JSONValue] = ["request_id": .string("eval-\(index + 1)")]
        if let messages = evalCase.messages {
            body["messages"] = .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) })
        } else {
            body["prompt"] = .string(evalCase.question)
        }
        let value = try JSONEncoder().encode(JSONValue.object(body))
        let record = KafkaConsumerMessage(topic: "eval", partition: 0, offset: Int64(index), key: nil, value: Array(value), headers: [], timestamp: nil)
        do {
            return try RequestCodec.decode(record, limits: limits)
        } catch {
            throw KnowledgeError(.invalidInput, "eval case \(index + 1) is not a valid request: \(error.message)")
        }
    }

    private func answer(_ evalCase: EvalCase, index: Int) async throws -> EvalResult {
        let request = try request(evalCase, index: index)
        let started = ContinuousClock.now
        let plan = try pipeline.plan(request)
        var completion: Completion?
        if plan.needsModel {
            let outcome: ScheduledJob.Outcome = await withCheckedContinuation { continuation in
                let job = ScheduledJob(request: request, plan: plan, enqueuedAt: Date()) { continuation.resume(returning: $0) }
                if !scheduler.enqueue(job) {
                    continuation.resume(returning: .failed(InferenceError(.invalidRequest, "the scheduler's queue is full"), startedAt: nil))
                }
            }
            switch outcome {
            case .completed(let result, _): completion = result
            case .failed(let error, _): throw KnowledgeError(.invalidInput, "eval case \(index + 1): inference failed: \(error.message)")
            case .expired, .answeredWithoutModel: break
            }
        }
        let decision = pipeline.decide(request, plan: plan, completion: completion)
        let elapsed = ContinuousClock.now - started
        let (seconds, attoseconds) = elapsed.components
        return EvalResult(
            case: evalCase, answer: decision.text, escalate: decision.escalate, reasons: decision.reasons,
            confidence: decision.confidence, passages: decision.passageIDs,
            latencyMs: (Double(seconds) + Double(attoseconds) / 1e18) * 1000,
            parts: [("retrieval", decision.parts.retrieval), ("generation", decision.parts.generation), ("support", decision.parts.support),
                    ("selection", decision.parts.selection)].reduce(into: [:]) { if let value = $1.1 { $0[$1.0] = value } })
    }
}
