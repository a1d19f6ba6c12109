import AuditLog
import Foundation

/// Collects audit entries from concurrently finishing requests and appends them in batches
/// (one transaction each). `record` returns once the entry's batch is durably written.
///
/// Up to two batches are in flight, so one is masked and hashed while the other holds the
/// write lock: an idle batcher writes at once (lowest latency); while a batch is being
/// written, a second starts only when a full batch is waiting, and otherwise what arrived
/// meanwhile goes out as the next batch when the first is done.
actor AuditBatcher {
    private let database: AuditDatabase
    private let maxBatch: Int
    private let maxInFlight = 2
    private var pending: [(AuditEntry, CheckedContinuation<AuditDatabase.AppendResult, any Error>)] = []
    private var inFlight = 0

    init(database: AuditDatabase, maxBatch: Int = 64) {
        self.database = database
        self.maxBatch = maxBatch
    }

    /// Appends `entry` (with others that arrive meanwhile) and returns the stored row.
    func record(_ entry: AuditEntry) async throws -> AuditDatabase.AppendResult {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((entry, continuation))
            startFlushes()
        }
    }

    private func startFlushes() {
        while !pending.isEmpty, inFlight == 0 || (inFlight < maxInFlight && pending.count >= maxBatch) {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            inFlight += 1
            Task { await self.flush(batch) }
        }
    }

    private func flush(_ batch: [(AuditEntry, CheckedContinuation<AuditDatabase.AppendResult, any Error>)]) async {
        do {
            let results = try await database.append(batch.map(\.0))
            for (index, result) in results.enumerated() { batch[index].1.resume(returning: result) }
        } catch {
            for item in batch { item.1.resume(throwing: error) }
        }
        inFlight -= 1
        startFlushes()
    }
}
