import Crypto
import Foundation
import GRDB

/// An audit row made ready before the write lock is taken: masked and sealed, with its
/// canonical serialisation and column values built — all but the three columns an append
/// assigns under the lock (`seq`, `recorded_at`, `prev_hash`) and the hash that covers them.
/// What remains under the lock is a few small strings and one SHA-256 per row.
struct PreparedRecord: Sendable {
    private(set) var record: AuditRecord
    /// `,["request_id",…]…,["worker_id",…]`: the chained fields between `seq` and `recorded_at`.
    private let middleJSON: [UInt8]
    /// `,["reply_topic",…]…`: the added fields that hold a value (the chain skips the others).
    private let addedJSON: [UInt8]
    /// Column values in insert order for the same two stretches (every added column).
    private let middleValues: [ColumnValue]
    private let addedValues: [ColumnValue]

    init(_ record: AuditRecord) {
        self.record = record
        let (middle, added) = record.lockIndependentFields
        var middleJSON: [UInt8] = []
        middleJSON.reserveCapacity(1024)
        var middleValues: [ColumnValue] = []
        middleValues.reserveCapacity(middle.count)
        for (name, value) in middle {
            let column = ColumnValue(value)
            // A time serialises as its stored text: formatted once, for both.
            if case .time(_?) = value, case .text(let text) = column {
                CanonicalJSON.appendField(name, .text(text), to: &middleJSON, leadingComma: true)
            } else {
                CanonicalJSON.appendField(name, value, to: &middleJSON, leadingComma: true)
            }
            middleValues.append(column)
        }
        var addedJSON: [UInt8] = []
        for (name, value) in added where value.databaseValue != nil {
            CanonicalJSON.appendField(name, value, to: &addedJSON, leadingComma: true)
        }
        self.middleJSON = middleJSON
        self.addedJSON = addedJSON
        self.middleValues = middleValues
        addedValues = added.map { ColumnValue($0.1) }
    }

    var requestID: String { record.requestID }

    /// Places the row after `prevHash` at `seq` and computes its `row_hash`: the bytes hashed
    /// are exactly `AuditChain.hash(record)`'s (`[["seq",n]` + middle + recorded_at + prev_hash
    /// + added + `]`), so the verifier recomputes the same value.
    mutating func chain(seq: Int64, recordedAt: Date, recordedAtText: String, prevHash: String) {
        record.seq = seq
        record.recordedAt = recordedAt
        record.prevHash = prevHash
        var head: [UInt8] = []
        head.reserveCapacity(32)
        CanonicalJSON.appendField("seq", .integer(seq), to: &head, leadingComma: false)
        var tail: [UInt8] = []
        tail.reserveCapacity(128)
        CanonicalJSON.appendField("recorded_at", .text(recordedAtText), to: &tail, leadingComma: true)
        CanonicalJSON.appendField("prev_hash", .text(prevHash), to: &tail, leadingComma: true)
        var hasher = SHA256()
        hasher.update(data: Array(prevHash.utf8))
        hasher.update(data: [UInt8(ascii: "\n"), UInt8(ascii: "[")])
        hasher.update(data: head)
        hasher.update(data: middleJSON)
        hasher.update(data: tail)
        hasher.update(data: addedJSON)
        hasher.update(data: [UInt8(ascii: "]")])
        record.rowHash = hasher.finalize().hexString
    }

    /// The row's values in `AuditRecord.storedFieldNames` order, then `row_hash`.
    func appendInsertValues(to values: inout [ColumnValue], recordedAtText: String) {
        values.append(.integer(record.seq))
        values.append(contentsOf: middleValues)
        values.append(.text(recordedAtText))
        values.append(.text(record.prevHash))
        values.append(contentsOf: addedValues)
        values.append(.text(record.rowHash))
    }
}

/// A column value as the insert binds it (what `CanonicalValue.databaseValue` stores).
enum ColumnValue: Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob(Data)

    init(_ value: CanonicalValue) {
        switch value {
        case .text(let text?): self = .text(text)
        case .integer(let integer?): self = .integer(integer)
        case .real(let real?): self = .real(real)
        case .time(let date?): self = .text(CanonicalTime.format(date))
        case .blob(let data?): self = .blob(data)
        default: self = .null
        }
    }
}
