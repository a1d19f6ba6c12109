import AuditLog
import Foundation

/// Collects audit entries from concurrently finishing requests and appends them in batches
/// (one transaction each). `record` returns once the entry's batch is durably written.
actor AuditBatcher {
    private let database: AuditDatabase
    private let maxBatch: Int
    private var pending: [(AuditEntry, CheckedContinuation<AuditDatabase.AppendResult, any Error>)] = []
    private var flushing = false

    init(database: AuditDatabase, maxBatch: Int = 64) {
        self.database = database
        self.maxBatch = maxBatch
    }

    /// Appends `entry` (with others that arrive meanwhile) and returns the stored row.
    func record(_ entry: AuditEntry) async throws -> AuditDatabase.AppendResult {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((entry, continuation))
            if !flushing {
                flushing = true
                Task { await self.flushLoop() }
            }
        }
    }

    private func flushLoop() async {
        while !pending.isEmpty {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            do {
                let results = try await database.append(batch.map(\.0))
                for (index, result) in results.enumerated() { batch[index].1.resume(returning: result) }
            } catch {
                for item in batch { item.1.resume(throwing: error) }
            }
        }
        flushing = false
    }
}
