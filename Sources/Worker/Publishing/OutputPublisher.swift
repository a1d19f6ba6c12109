import Foundation
import KafkaClient
import Logging

/// Publishes what the worker sends for a request — its reply (or error reply), its
/// escalation transcript, a record's dead-letter copy — each carrying the request's trace.
/// Retriable errors are retried with back-off; a permanent one ends the message as
/// `.failed`; a fatal producer error trips the fatal latch; shutdown ends retrying as
/// `.stopped` (the record stays uncommitted, its partition's next owner answers it).
struct OutputPublisher: Sendable {
    enum Delivery {
        case delivered
        /// Permanent for this message (or retriable errors beyond a per-record destination's budget).
        case failed(KafkaError)
        /// Shutdown began before it was delivered.
        case stopped
    }

    /// Whose topic a message goes to: the worker's own topics (default replies, escalations,
    /// dead letters) are retried as long as the error is retriable; a request's own
    /// destination gets a bounded number of attempts.
    enum Destination { case own, requested }

    let producer: KafkaProducer
    let topics: TopicDirectory
    let defaultTopic: String
    let escalationsTopic: String
    let deadLettersTopic: String
    let workerID: String
    let shutdown: ShutdownFlag
    let fatal: FatalLatch
    let metrics: WorkerMetrics
    let logger: Logger

    /// A reply to `topic` (the request's own, or the default one).
    func deliver(_ reply: InferenceReply, to topic: String, partition: Int32?, correlationID: [UInt8]?, key: String?, trace: RequestTrace) async -> Delivery {
        let message = KafkaProducerMessage(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: reply.encoded(),
            headers: InferenceReply.headers(correlationID: correlationID, requestID: reply.requestID) + trace.headers)
        return await send(message, destination: topic == defaultTopic && partition == nil ? .own : .requested)
    }

    /// The transcript a human agent takes the conversation over with.
    func deliverEscalation(_ request: InferenceRequest, reply: InferenceReply, answer: String) async -> Delivery {
        let transcript = EscalationTranscript(
            requestID: request.requestID, conversationID: request.conversationID, channel: request.channel,
            reason: reply.escalationReason ?? "", confidence: reply.confidence,
            transcript: [.init(role: "customer", content: request.prompt), .init(role: "assistant", content: answer)], worker: workerID)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return await send(KafkaProducerMessage(
            topic: escalationsTopic, key: request.conversationID.map { Array($0.utf8) }, value: Array((try? encoder.encode(transcript)) ?? Data()),
            headers: InferenceReply.headers(correlationID: request.correlationID, requestID: request.requestID) + request.trace.headers), destination: .own)
    }

    /// A record's dead-letter copy, truncated to fit.
    func deadLetter(_ copy: DeadLetterCopy, code: String, message: String, trace: RequestTrace) async -> Delivery {
        var letter = copy.message(topic: deadLettersTopic, code: code, reason: message, worker: workerID)
        letter.headers = letter.headers.replacingTrace(with: trace)
        let delivery = await send(letter, destination: .own)
        if case .failed(let error) = delivery {
            logger.error("dead-letter copy failed", metadata: ["topic": "\(copy.topic)", "offset": "\(copy.offset)", "error": "\(error)"])
        }
        return delivery
    }

    private func send(_ message: KafkaProducerMessage, destination: Destination) async -> Delivery {
        var backoff = Backoff(shutdown)
        while true {
            do {
                try await producer.send(message)
                return .delivered
            } catch {
                metrics.publishFailures.increment()
                let kafka = error as? KafkaError ?? KafkaError(code: .underlying, message: "\(error)")
                if let fatalError = producer.fatalError {
                    fatal.trip("producer: \(fatalError)")
                    logger.error("fatal producer error: exiting", metadata: ["error": "\(fatalError)"])
                    return .stopped
                }
                if kafka.code == .closed { return .stopped }
                guard kafka.isRetriable, destination == .own || backoff.attempts < 3 else {
                    logger.error("publish failed for good", metadata: ["topic": "\(message.topic)", "error": "\(kafka)"])
                    await topics.forget(message.topic)
                    return .failed(kafka)
                }
                logger.warning("publish failed; retrying", metadata: ["topic": "\(message.topic)", "attempt": "\(backoff.attempts + 1)", "error": "\(kafka)"])
                guard await backoff.wait() else { return .stopped }
            }
        }
    }
}
