import Crypto
import Foundation
import GRDB

/// What `verify` found.
public struct VerificationReport: Sendable {
    /// The first problem, or nil when both chains and every checkpoint are intact.
    public struct Failure: Sendable, Equatable, CustomStringConvertible {
        public var table: String
        /// The row (or checkpoint id) where the problem shows.
        public var seq: Int64
        public var requestID: String?
        public var reason: String

        public var description: String {
            "\(table) seq \(seq)\(requestID.map { " (request \($0))" } ?? ""): \(reason)"
        }
    }

    public var auditRows: Int64 = 0
    public var reviewRows: Int64 = 0
    public var checkpoints: Int = 0
    public var signedCheckpoints: Int = 0
    public var prunedThroughSeq: Int64 = 0
    public var auditHead: (seq: Int64, hash: String) = (0, AuditChain.genesis)
    public var failure: Failure?

    public var isIntact: Bool { failure == nil }
}

extension AuditDatabase {
    /// Walks both chains and checks every checkpoint and prune anchor.
    ///
    /// - Parameter publicKey: base64 Ed25519 public key that must have signed every
    ///   checkpoint and anchor. Without it, signatures are checked against the key stored
    ///   with them, which proves integrity but not who signed.
    public func verify(publicKey: String? = nil) throws(AuditError) -> VerificationReport {
        let pinned: Curve25519.Signing.PublicKey?
        if let publicKey {
            guard let raw = Data(base64Encoded: publicKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
                throw AuditError(code: .key, message: "the public key must be base64 of a 32-byte Ed25519 public key")
            }
            pinned = key
        } else {
            pinned = nil
        }
        return try read("verifying the chain") { db in
            var report = VerificationReport()
            try ChainVerifier(db: db, pinned: pinned).run(into: &report)
            return report
        }
    }
}

struct ChainVerifier {
    let db: Database
    let pinned: Curve25519.Signing.PublicKey?

    func run(into report: inout VerificationReport) throws {
        let anchors = try PruneAnchor.order(Column("pruned_through_seq")).fetchAll(db)
        for anchor in anchors {
            if let problem = signatureProblem(anchor.signedMessage, anchor.publicKey, anchor.signature) {
                report.failure = .init(table: "prune_anchors", seq: anchor.id ?? 0, reason: problem)
                return
            }
        }
        let anchor = anchors.last
        report.prunedThroughSeq = anchor?.prunedThroughSeq ?? 0
        guard try walkAuditChain(from: anchor, into: &report) else { return }
        guard try walkReviewChain(into: &report) else { return }
        try checkCheckpoints(into: &report)
    }

    /// Returns false (with `report.failure` set) at the first broken row.
    private func walkAuditChain(from anchor: PruneAnchor?, into report: inout VerificationReport) throws -> Bool {
        var expectedSeq = (anchor?.prunedThroughSeq ?? 0) + 1
        var expectedPrev = anchor?.anchorHash ?? AuditChain.genesis
        let cursor = try AuditRecord.order(Column("seq")).fetchCursor(db)
        while let record = try cursor.next() {
            if let reason = linkProblem(seq: record.seq, prev: record.prevHash, expectedSeq: expectedSeq, expectedPrev: expectedPrev)
                ?? (AuditChain.hash(record) == record.rowHash ? nil : "contents do not match row_hash (the row was edited)")
            {
                report.failure = .init(table: "audit_records", seq: record.seq, requestID: record.requestID, reason: reason)
                return false
            }
            expectedSeq = record.seq + 1
            expectedPrev = record.rowHash
            report.auditRows += 1
        }
        report.auditHead = (expectedSeq - 1, expectedPrev)
        return true
    }

    private func walkReviewChain(into report: inout VerificationReport) throws -> Bool {
        var expectedSeq: Int64 = 1
        var expectedPrev = AuditChain.genesis
        let cursor = try ReviewRecord.order(Column("seq")).fetchCursor(db)
        while let review = try cursor.next() {
            if let reason = linkProblem(seq: review.seq, prev: review.prevHash, expectedSeq: expectedSeq, expectedPrev: expectedPrev)
                ?? (AuditChain.hash(review) == review.rowHash ? nil : "contents do not match row_hash (the row was edited)")
            {
                report.failure = .init(table: "review_records", seq: review.seq, requestID: review.requestID, reason: reason)
                return false
            }
            expectedSeq = review.seq + 1
            expectedPrev = review.rowHash
            report.reviewRows += 1
        }
        return true
    }

    private func linkProblem(seq: Int64, prev: String, expectedSeq: Int64, expectedPrev: String) -> String? {
        if seq != expectedSeq {
            return seq > expectedSeq
                ? "expected seq \(expectedSeq): rows \(expectedSeq)…\(seq - 1) are missing (deleted)"
                : "seq out of order (inserted or re-ordered row)"
        }
        if prev != expectedPrev {
            return "prev_hash does not match the previous row's hash (a row was inserted, deleted or swapped)"
        }
        return nil
    }

    private func checkCheckpoints(into report: inout VerificationReport) throws {
        let checkpoints = try ChainCheckpoint.order(Column("id")).fetchAll(db)
        report.checkpoints = checkpoints.count
        for checkpoint in checkpoints {
            let id = checkpoint.id ?? 0
            if let problem = signatureProblem(checkpoint.signedMessage, checkpoint.publicKey, checkpoint.signature) {
                report.failure = .init(table: "checkpoints", seq: id, reason: problem)
                return
            }
            if checkpoint.signature != nil { report.signedCheckpoints += 1 }
            if let problem = try headProblem(
                table: "audit_records", seq: checkpoint.auditHeadSeq, hash: checkpoint.auditHeadHash,
                prunedThrough: report.prunedThroughSeq, last: report.auditHead.seq)
            {
                report.failure = .init(table: "audit_records", seq: checkpoint.auditHeadSeq, reason: "checkpoint \(id): \(problem)")
                return
            }
            if let problem = try headProblem(
                table: "review_records", seq: checkpoint.reviewHeadSeq, hash: checkpoint.reviewHeadHash,
                prunedThrough: 0, last: report.reviewRows)
            {
                report.failure = .init(table: "review_records", seq: checkpoint.reviewHeadSeq, reason: "checkpoint \(id): \(problem)")
                return
            }
        }
    }

    private func headProblem(table: String, seq: Int64, hash: String, prunedThrough: Int64, last: Int64) throws -> String? {
        guard seq > prunedThrough else { return nil }
        if seq > last {
            return "the chain ends at seq \(last) but a checkpoint recorded seq \(seq): the tail was cut"
        }
        let stored = try String.fetchOne(db, sql: "SELECT row_hash FROM \(table) WHERE seq = ?", arguments: [seq])
        return stored == hash ? nil : "row \(seq) differs from the checkpointed hash"
    }

    private func signatureProblem(_ message: Data, _ publicKey: String?, _ signature: String?) -> String? {
        guard let signature else {
            return pinned == nil ? nil : "unsigned, but a public key was given"
        }
        guard let signatureData = Data(base64Encoded: signature),
              let keyData = publicKey.flatMap({ Data(base64Encoded: $0) }),
              let stored = try? Curve25519.Signing.PublicKey(rawRepresentation: keyData)
        else { return "malformed signature or public key" }
        if let pinned, pinned.rawRepresentation != stored.rawRepresentation {
            return "signed by a different key than the one given"
        }
        return stored.isValidSignature(signatureData, for: message) ? nil : "the signature does not match (altered)"
    }
}
