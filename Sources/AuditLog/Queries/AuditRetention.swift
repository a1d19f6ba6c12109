import Foundation
import GRDB

extension AuditDatabase {
    /// What a prune removed.
    public struct PruneResult: Sendable {
        public var removedRows: Int64
        public var anchor: PruneAnchor?
    }

    /// Removes the oldest rows recorded before `before` (a prefix of the chain), leaving an
    /// anchor so the remaining chain still verifies. Refuses when `before` is later than
    /// `now − minimumRetention`.
    public func prune(before: Date, now: Date = Date()) throws(AuditError) -> PruneResult {
        guard let configuration else { throw AuditError(code: .readOnly, message: "opened for reading") }
        let newest = now.addingTimeInterval(-configuration.minimumRetention)
        guard before <= newest else {
            let days = Int(configuration.minimumRetention / 86_400)
            throw AuditError(
                code: .invalidArgument,
                message: "refusing to prune rows younger than the minimum retention of \(days) days: --before must be at or before \(CanonicalTime.format(newest))"
            )
        }
        return try write("pruning") { db in
            let cutoff = CanonicalTime.format(before)
            let firstKept = try Int64.fetchOne(db, sql: "SELECT min(seq) FROM audit_records WHERE recorded_at >= ?", arguments: [cutoff])
            let lastPruned: Int64
            if let firstKept {
                lastPruned = firstKept - 1
            } else {
                lastPruned = try Int64.fetchOne(db, sql: "SELECT max(seq) FROM audit_records") ?? 0
            }
            let removable = try Int64.fetchOne(db, sql: "SELECT count(*) FROM audit_records WHERE seq <= ?", arguments: [lastPruned]) ?? 0
            guard removable > 0,
                  let anchorHash = try String.fetchOne(db, sql: "SELECT row_hash FROM audit_records WHERE seq = ?", arguments: [lastPruned])
            else { return PruneResult(removedRows: 0, anchor: nil) }
            try db.execute(sql: "UPDATE audit_maintenance SET pruning = 1")
            try db.execute(sql: "DELETE FROM audit_records WHERE seq <= ?", arguments: [lastPruned])
            try db.execute(sql: "UPDATE audit_maintenance SET pruning = 0")
            var anchor = PruneAnchor(
                prunedThroughSeq: lastPruned,
                prunedRows: removable,
                anchorHash: anchorHash,
                prunedBefore: cutoff,
                prunedAt: CanonicalTime.format(try db.transactionDate)
            )
            if let key = configuration.keys.signingKey {
                anchor.publicKey = key.publicKey.rawRepresentation.base64EncodedString()
                anchor.signature = try key.signature(for: anchor.signedMessage).base64EncodedString()
            }
            try anchor.insert(db)
            return PruneResult(removedRows: removable, anchor: anchor)
        }
    }
}
