import Crypto
import Foundation
import GRDB

/// Exports for regulators, and verification of a JSONL export on its own.
///
/// JSONL layout (`sluice-audit-export/v1`): a first line `{"type":"anchor",…}` with the
/// `prev_hash` the first exported row links to; one `{"type":"record",…}` line per row with
/// every chained column and `row_hash`; a last line `{"type":"head",…}` with the last hash
/// and the newest signed checkpoint, if any. Rows are a contiguous run of the chain
/// (selected by `recorded_at`), so the export verifies without the database.
extension AuditDatabase {
    public enum ExportFormat: String, Sendable, CaseIterable { case jsonl, csv }

    /// Writes rows recorded in [since, until) to `output`; returns the number of rows.
    @discardableResult
    public func export(format: ExportFormat, since: Date?, until: Date?, to output: (String) -> Void) throws(AuditError) -> Int {
        try read("exporting") { db in
            var request = AuditRecord.order(Column("seq"))
            if let since { request = request.filter(Column("recorded_at") >= CanonicalTime.format(since)) }
            if let until { request = request.filter(Column("recorded_at") < CanonicalTime.format(until)) }
            let cursor = try request.fetchCursor(db)
            var count = 0
            var last: AuditRecord?
            while let record = try cursor.next() {
                if count == 0 {
                    if format == .jsonl {
                        output(Self.jsonLine(["type": "anchor", "format": "sluice-audit-export/v1",
                                              "first_seq": record.seq, "prev_hash": record.prevHash]))
                    } else {
                        output(Self.csvHeader)
                    }
                }
                let fields = record.chainedFields + [("row_hash", .text(record.rowHash))]
                switch format {
                case .jsonl:
                    var line = "{\"type\":\"record\""
                    for (name, value) in fields {
                        line += ",\"\(name)\":"
                        value.appendJSON(to: &line)
                    }
                    output(line + "}")
                case .csv:
                    output(Self.csvLine(record))
                }
                last = record
                count += 1
            }
            if format == .jsonl {
                var head: [String: Any] = ["type": "head", "rows": count, "last_seq": last?.seq ?? 0, "last_hash": last?.rowHash ?? ""]
                if let last, let checkpoint = try ChainCheckpoint
                    .filter(Column("audit_head_seq") >= last.seq && Column("signature") != nil)
                    .order(Column("id")).fetchOne(db)
                {
                    let checkpointHash = try String.fetchOne(db, sql: "SELECT row_hash FROM audit_records WHERE seq = ?", arguments: [checkpoint.auditHeadSeq])
                    if checkpoint.auditHeadSeq == last.seq || checkpointHash != nil {
                        head["checkpoint"] = try Self.checkpointObject(checkpoint)
                    }
                }
                output(Self.jsonLine(head))
            }
            return count
        }
    }

    private static func checkpointObject(_ checkpoint: ChainCheckpoint) throws -> Any {
        let data = try JSONEncoder().encode(checkpoint)
        return try JSONSerialization.jsonObject(with: data)
    }

    static func jsonLine(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The CSV header: every stored column, then `row_hash`.
    public static var csvHeader: String { (AuditRecord.storedFieldNames + ["row_hash"]).joined(separator: ",") }

    /// One record as a CSV line (RFC 4180 quoting), in ``csvHeader`` order.
    public static func csvLine(_ record: AuditRecord) -> String {
        (record.storedFields + [("row_hash", .text(record.rowHash))]).map { csvField($0.1) }.joined(separator: ",")
    }

    static func csvField(_ value: CanonicalValue) -> String {
        var json = ""
        value.appendJSON(to: &json)
        let text: String
        switch value {
        case .text(let string?): text = string
        case .time(let date?): text = CanonicalTime.format(date)
        case .blob(let data?): text = data.base64EncodedString()
        case .integer(.some), .real(.some): text = json
        default: return ""
        }
        let needsQuotes = text.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }
        return needsQuotes ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    /// Verifies a JSONL export on its own: every row's hash, the links between rows, the
    /// head line, and the signed checkpoint it carries (against `publicKey` when given).
    public static func verifyExport(lines: [String], publicKey: String? = nil) throws(AuditError) -> VerificationReport {
        var report = VerificationReport()
        func fail(_ seq: Int64, _ reason: String) -> VerificationReport {
            report.failure = .init(table: "export", seq: seq, reason: reason)
            return report
        }
        let objects = lines.filter { !$0.isEmpty }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        guard objects.count == lines.filter({ !$0.isEmpty }).count, let anchor = objects.first, anchor["type"] as? String == "anchor",
              let headLine = objects.last, headLine["type"] as? String == "head"
        else {
            return fail(0, "not a sluice-audit-export/v1 JSONL file (anchor and head lines missing or malformed)")
        }
        var expectedPrev = anchor["prev_hash"] as? String ?? ""
        var expectedSeq = (anchor["first_seq"] as? NSNumber)?.int64Value ?? 1
        let template = AuditRecord(requestID: "", receivedAt: Date(), completedAt: Date(), route: .auto, status: .ok, workerID: "").storedFields
        for object in objects.dropFirst().dropLast() {
            let seq = (object["seq"] as? NSNumber)?.int64Value ?? -1
            guard seq == expectedSeq else { return fail(seq, "expected seq \(expectedSeq): rows missing or re-ordered") }
            guard object["prev_hash"] as? String == expectedPrev else { return fail(seq, "prev_hash does not link to the previous row") }
            guard let fields = rebuild(template, from: object), let rowHash = object["row_hash"] as? String else {
                return fail(seq, "a field is missing or has the wrong type")
            }
            guard AuditChain.hash(fields, prevHash: expectedPrev) == rowHash else { return fail(seq, "contents do not match row_hash (edited)") }
            expectedPrev = rowHash
            expectedSeq += 1
            report.auditRows += 1
        }
        guard (headLine["rows"] as? NSNumber)?.int64Value == report.auditRows, headLine["last_hash"] as? String == expectedPrev || report.auditRows == 0 else {
            return fail(expectedSeq, "the head line does not match the rows (rows cut from the end)")
        }
        report.auditHead = (expectedSeq - 1, expectedPrev)
        if let checkpoint = headLine["checkpoint"] as? [String: Any] {
            guard let data = try? JSONSerialization.data(withJSONObject: checkpoint),
                  let decoded = try? JSONDecoder().decode(ChainCheckpoint.self, from: data),
                  let signature = decoded.signature.flatMap({ Data(base64Encoded: $0) }),
                  let key = decoded.publicKey.flatMap({ Data(base64Encoded: $0) }).flatMap({ try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }),
                  key.isValidSignature(signature, for: decoded.signedMessage)
            else { return fail(expectedSeq, "the checkpoint's signature does not verify") }
            if let publicKey, publicKey != decoded.publicKey { return fail(expectedSeq, "the checkpoint was signed by a different key") }
            if decoded.auditHeadSeq == report.auditHead.seq, decoded.auditHeadHash != report.auditHead.hash {
                return fail(expectedSeq, "the last row differs from the signed checkpoint")
            }
            report.checkpoints = 1
            report.signedCheckpoints = 1
        }
        return report
    }

    /// The canonical fields of an exported record, typed like `template`.
    private static func rebuild(_ template: [(String, CanonicalValue)], from object: [String: Any]) -> [(String, CanonicalValue)]? {
        var fields: [(String, CanonicalValue)] = []
        for (name, kind) in template {
            // Columns added after v1 are hashed (and exported) only when they hold a value.
            let added = AuditRecord.addedFieldNames.contains(name)
            guard let raw = object[name] else {
                if added { continue }
                return nil
            }
            let isNull = raw is NSNull
            if added && isNull { continue }
            let value: CanonicalValue
            switch kind {
            case .text: value = .text(isNull ? nil : (raw as? String))
            case .integer: value = .integer(isNull ? nil : (raw as? NSNumber)?.int64Value)
            case .real: value = .real(isNull ? nil : (raw as? NSNumber)?.doubleValue)
            case .time: value = .time(isNull ? nil : CanonicalTime.parse(raw as? String))
            case .blob: value = .blob(isNull ? nil : (raw as? String).flatMap { Data(base64Encoded: $0) })
            }
            if !isNull && value == kind.asNull { return nil }
            fields.append((name, value))
        }
        return fields
    }
}

extension CanonicalValue {
    /// The same kind of value, absent.
    var asNull: CanonicalValue {
        switch self {
        case .text: .text(nil)
        case .integer: .integer(nil)
        case .real: .real(nil)
        case .time: .time(nil)
        case .blob: .blob(nil)
        }
    }
}

extension AuditRecord {
    /// Every stored column but `row_hash`, in table order.
    static let storedFieldNames = AuditRecord(requestID: "", receivedAt: Date(), completedAt: Date(), route: .auto, status: .ok, workerID: "")
        .storedFields.map(\.0)
}
