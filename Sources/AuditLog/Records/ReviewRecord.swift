import Foundation
import GRDB

/// A human reviewer's decision on an escalated (or any) answer. Chained like audit rows,
/// in its own chain.
public struct ReviewRecord: Sendable, Equatable {
    public enum Decision: String, Sendable, CaseIterable, Codable { case approved, corrected, rejected }

    public var seq: Int64 = 0
    public var requestID: String
    public var reviewerID: String
    public var decision: Decision
    public var note: String?
    public var reviewedAt: Date = Date(timeIntervalSince1970: 0)
    public var prevHash: String = ""
    public var rowHash: String = ""

    public init(requestID: String, reviewerID: String, decision: Decision, note: String?) {
        self.requestID = requestID
        self.reviewerID = reviewerID
        self.decision = decision
        self.note = note
    }
}

extension ReviewRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "review_records"

    var chainedFields: [(String, CanonicalValue)] {
        [
            ("seq", .integer(seq)),
            ("request_id", .text(requestID)),
            ("reviewer_id", .text(reviewerID)),
            ("decision", .text(decision.rawValue)),
            ("note", .text(note)),
            ("reviewed_at", .time(reviewedAt)),
            ("prev_hash", .text(prevHash)),
        ]
    }

    public func encode(to container: inout PersistenceContainer) {
        for (name, value) in chainedFields { container[name] = value.databaseValue }
        container["row_hash"] = rowHash
    }

    public init(row: Row) throws {
        seq = row["seq"]
        requestID = row["request_id"]
        reviewerID = row["reviewer_id"]
        decision = Decision(rawValue: row["decision"] ?? "") ?? .rejected
        note = row["note"]
        guard let reviewed = CanonicalTime.parse(row["reviewed_at"]) else {
            throw AuditError(code: .corrupt, message: "review row \(seq): bad reviewed_at")
        }
        reviewedAt = reviewed
        prevHash = row["prev_hash"]
        rowHash = row["row_hash"]
    }
}

/// A signed statement of both chains' heads at a moment. Verification checks that the
/// rows it names still exist with those hashes, so cutting the tail is detected.
public struct ChainCheckpoint: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "checkpoints"

    public var id: Int64?
    public var auditHeadSeq: Int64
    public var auditHeadHash: String
    public var reviewHeadSeq: Int64
    public var reviewHeadHash: String
    public var createdAt: String
    /// Base64 Ed25519 public key, or nil when unsigned.
    public var publicKey: String?
    /// Base64 Ed25519 signature over ``signedMessage``.
    public var signature: String?

    enum CodingKeys: String, CodingKey {
        case id
        case auditHeadSeq = "audit_head_seq"
        case auditHeadHash = "audit_head_hash"
        case reviewHeadSeq = "review_head_seq"
        case reviewHeadHash = "review_head_hash"
        case createdAt = "created_at"
        case publicKey = "public_key"
        case signature
    }

    /// The exact bytes signed (documented for independent verifiers).
    public var signedMessage: Data {
        Data("sluice-audit-checkpoint/v1\n\(auditHeadSeq)\n\(auditHeadHash)\n\(reviewHeadSeq)\n\(reviewHeadHash)\n\(createdAt)".utf8)
    }
}

/// Records a retention prune: the rows up to `prunedThroughSeq` are gone, and the chain of
/// the remaining rows starts from `anchorHash` (the last pruned row's hash).
public struct PruneAnchor: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "prune_anchors"

    public var id: Int64?
    public var prunedThroughSeq: Int64
    public var prunedRows: Int64
    public var anchorHash: String
    public var prunedBefore: String
    public var prunedAt: String
    public var publicKey: String?
    public var signature: String?

    enum CodingKeys: String, CodingKey {
        case id
        case prunedThroughSeq = "pruned_through_seq"
        case prunedRows = "pruned_rows"
        case anchorHash = "anchor_hash"
        case prunedBefore = "pruned_before"
        case prunedAt = "pruned_at"
        case publicKey = "public_key"
        case signature
    }

    public var signedMessage: Data {
        Data("sluice-audit-prune/v1\n\(prunedThroughSeq)\n\(prunedRows)\n\(anchorHash)\n\(prunedBefore)\n\(prunedAt)".utf8)
    }
}
