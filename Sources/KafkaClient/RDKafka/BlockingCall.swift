import Dispatch

/// A queue for librdkafka calls that block (sync commits, metadata, admin requests), so
/// they never occupy a thread of Swift's cooperative pool.
let kafkaBlockingQueue = DispatchQueue(label: "sluice.kafka.blocking", attributes: .concurrent)

/// Runs a blocking `body` on `queue` and suspends until it returns.
func runBlocking<T: Sendable>(
    on queue: DispatchQueue = kafkaBlockingQueue,
    _ body: @escaping @Sendable () throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        queue.async { continuation.resume(with: Result { try body() }) }
    }
}

extension String {
    /// Decodes a NUL-terminated C string held in a fixed-size buffer (librdkafka's errstr).
    init(cBuffer: [CChar]) {
        let bytes = cBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self.init(decoding: bytes, as: UTF8.self)
    }
}
