import Dispatch
import Logging
import Synchronization

/// A producer whose ``send(_:)`` returns only once the broker acknowledged the message
/// (or delivery failed for good), so callers can order side effects after delivery.
///
/// Idempotent by default. A dedicated dispatch queue polls librdkafka for delivery reports.
public final class KafkaProducer: Sendable {

    /// Holds the continuation of one `send`; passed through librdkafka as the message's
    /// opaque pointer (retained while the message is in flight).
    private final class PendingDelivery: Sendable {
        let continuation: CheckedContinuation<KafkaDeliveryReport, any Error>
        init(_ continuation: CheckedContinuation<KafkaDeliveryReport, any Error>) {
            self.continuation = continuation
        }
    }

    let client: RDKafkaClient
    private let closed = Atomic(false)
    private let pollLoop: PollLoop
    private let logger: Logger

    /// - Parameters:
    ///   - configuration: producer settings (idempotent, lz4 by default).
    ///   - logger: receives librdkafka's log lines and client errors.
    public init(
        configuration: KafkaProducerConfiguration,
        logger: Logger = Logger(label: "sluice.kafka.producer")
    ) throws {
        try configuration.validate()
        let callbacks = RDKafkaCallbacks(logger: logger)
        callbacks.onDelivery = { opaque, result in
            guard let opaque else { return }
            let pending = Unmanaged<PendingDelivery>.fromOpaque(opaque).takeRetainedValue()
            pending.continuation.resume(with: result.mapError { $0 as any Error })
        }
        callbacks.onError = { error in
            if error.isFatal {
                logger.error("kafka producer fatal error", metadata: ["error": "\(error)"])
            } else {
                logger.warning("kafka producer error", metadata: ["error": "\(error)"])
            }
        }
        self.client = try RDKafkaClient(kind: .producer, properties: configuration.librdkafkaProperties, callbacks: callbacks)
        self.logger = logger
        self.pollLoop = PollLoop(client: client, label: "sluice.kafka.producer.poll")
    }

    /// Sends `message` and returns where it was written, after the broker acknowledged it.
    ///
    /// Throws ``KafkaError`` with code `.delivery` when delivery failed for good (after
    /// librdkafka's retries, within the configured delivery timeout), and `.closed` after
    /// ``close(timeout:)``. Waits while librdkafka's local queue is full.
    @discardableResult
    public func send(_ message: KafkaProducerMessage) async throws -> KafkaDeliveryReport {
        while true {
            if closed.load(ordering: .acquiring) {
                throw KafkaError(code: .closed, message: "the producer is closed")
            }
            do {
                return try await withCheckedThrowingContinuation { continuation in
                    let pending = Unmanaged.passRetained(PendingDelivery(continuation))
                    do {
                        try client.produce(message, opaque: pending.toOpaque())
                    } catch {
                        pending.release()
                        continuation.resume(throwing: error)
                    }
                }
            } catch let error as KafkaError where error.isLocalQueueFull {
                // Local backpressure: the queue drains as deliveries complete.
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// Waits until every message sent so far was delivered or failed.
    public func flush(timeout: Duration = .seconds(30)) async throws {
        try await runBlocking { [client] in try client.flush(timeoutMs: Int32(timeout.milliseconds)) }
    }

    /// Flushes, then stops the producer. Further sends throw `.closed`. Idempotent.
    public func close(timeout: Duration = .seconds(30)) async throws {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        do {
            try await flush(timeout: timeout)
        } catch {
            await pollLoop.stop()
            throw error
        }
        await pollLoop.stop()
    }

    /// The fatal error that made this producer unusable (an idempotent producer's sequence
    /// or epoch error, say), if any: nothing more can be sent; the process should restart.
    public var fatalError: KafkaError? { client.fatalError() }

    /// Cluster metadata as this producer sees it (e.g. to check a topic exists).
    public func metadata(topic: String? = nil, timeout: Duration = .seconds(10)) async throws -> KafkaClusterMetadata {
        try await runBlocking { [client] in try client.metadata(topic: topic, timeoutMs: Int32(timeout.milliseconds)) }
    }

    deinit {
        pollLoop.requestStop()
    }
}
