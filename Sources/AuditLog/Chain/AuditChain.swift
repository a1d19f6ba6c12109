import Crypto
import Foundation

/// The hash chain over audit rows: `row_hash = SHA-256(prev_hash + "\n" + canonical row)`,
/// hex-encoded, where the first row's `prev_hash` is 64 zeros (or a prune anchor's hash).
/// Editing, deleting, inserting or re-ordering any row breaks the chain from that row on.
public enum AuditChain {
    /// `prev_hash` of the very first row.
    public static let genesis = String(repeating: "0", count: 64)

    /// The hash of a row whose `prevHash` is already set.
    static func hash(_ fields: [(String, CanonicalValue)], prevHash: String) -> String {
        var hasher = SHA256()
        hasher.update(data: Data(prevHash.utf8))
        hasher.update(data: Data("\n".utf8))
        CanonicalJSON.serialise(fields).withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return hasher.finalize().hexString
    }

    static func hash(_ record: AuditRecord) -> String {
        hash(record.chainedFields, prevHash: record.prevHash)
    }

    static func hash(_ review: ReviewRecord) -> String {
        hash(review.chainedFields, prevHash: review.prevHash)
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Digest {
    var hexString: String { Array(self).hexString }
}
