import AuditLog
import Foundation
import Testing

/// Tampering through the sqlite3 CLI, each case on its own database, must be detected.
@Suite("Audit chain: tamper detection")
struct ChainTamperTests {
    @Test("an untouched database verifies, also with the signer's key pinned")
    func untouched() throws {
        let database = try AuditFixture.populated()
        let report = try AuditDatabase.openForReading(path: database.path).verify(publicKey: AuditFixture.keys.publicKey)
        #expect(report.isIntact, "\(String(describing: report.failure))")
        #expect(report.auditRows == 20 && report.reviewRows == 2 && report.signedCheckpoints == 1)
    }

    @Test("SQLite itself refuses updates and deletes while the triggers are in place")
    func triggersRefuse() throws {
        let database = try AuditFixture.populated()
        let update = try sqlite3(database.path, "UPDATE audit_records SET response_masked = 'x' WHERE seq = 1;")
        #expect(update.status != 0 && update.output.contains("append-only"))
        let delete = try sqlite3(database.path, "DELETE FROM audit_records WHERE seq = 1;")
        #expect(delete.status != 0 && delete.output.contains("append-only"))
        #expect(try database.verify().isIntact)
    }

    /// Each case drops the guarding trigger first, as a determined insider would.
    @Test("tampering is detected and the first bad row is named", arguments: [
        ("update a response", "DROP TRIGGER audit_records_no_update; UPDATE audit_records SET response_masked = 'all good' WHERE seq = 5;",
         "audit_records", Int64(5)),
        ("delete a row", "DROP TRIGGER audit_records_no_delete; DELETE FROM audit_records WHERE seq = 7;", "audit_records", Int64(8)),
        ("insert a row",
         "INSERT INTO audit_records SELECT 21, 'forged', conversation_id, customer_pseudonym, channel, topic, partition, \"offset\", received_at, started_at, completed_at, queue_ms, inference_ms, model_name, model_quantization, model_sha256, prompt_template_version, sampling_parameters, seed, prompt_masked, prompt_sha256, prompt_sealed, response_masked, prompt_tokens, completion_tokens, confidence, confidence_method, confidence_threshold, route, escalation_reason, status, error_code, error_message, worker_id, recorded_at, row_hash, row_hash, reply_topic, reply_partition, knowledge_version, knowledge_passages, escalation_reasons, decision_parts, trace_id, cached_from FROM audit_records WHERE seq = 20;",
         "audit_records", Int64(21)),
        ("swap two rows", "DROP TRIGGER audit_records_no_update; UPDATE audit_records SET seq = -3 WHERE seq = 3; UPDATE audit_records SET seq = 3 WHERE seq = 4; UPDATE audit_records SET seq = 4 WHERE seq = -3;",
         "audit_records", Int64(3)),
        ("truncate the tail after a checkpoint", "DROP TRIGGER audit_records_no_delete; DELETE FROM audit_records WHERE seq >= 18;",
         "audit_records", Int64(20)),
        ("edit a review", "DROP TRIGGER review_records_no_update; UPDATE review_records SET decision = 'rejected' WHERE seq = 1;",
         "review_records", Int64(1)),
        ("forge a checkpoint", "DROP TRIGGER checkpoints_no_change; UPDATE checkpoints SET audit_head_seq = 19;", "checkpoints", Int64(1)),
    ])
    func tampering(name: String, sql: String, table: String, seq: Int64) throws {
        let database = try AuditFixture.populated()
        let result = try sqlite3(database.path, sql)
        #expect(result.status == 0, "\(name): \(result.output)")
        let report = try AuditDatabase.openForReading(path: database.path).verify()
        let failure = try #require(report.failure, "\(name) went undetected")
        #expect(failure.table == table, "\(name): \(failure)")
        #expect(failure.seq == seq, "\(name): \(failure)")
    }

    @Test("a checkpoint signed by another key is rejected when the signer's key is pinned")
    func pinnedKey() throws {
        let database = try AuditFixture.populated()
        let other = AuditKeys.generate().publicKey
        let failure = try #require(try database.verify(publicKey: other).failure)
        #expect(failure.table == "checkpoints")
        #expect(failure.reason.contains("different key"))
    }

    @Test("checkpoints are signed automatically every N rows")
    func periodicCheckpoints() throws {
        let database = try AuditFixture.newDatabase(configuration: AuditFixture.configuration(checkpointEvery: 10))
        for start in stride(from: 1, through: 31, by: 5) {
            try database.append((start..<(start + 5)).map { AuditFixture.entry($0) })
        }
        let report = try database.verify(publicKey: AuditFixture.keys.publicKey)
        #expect(report.isIntact)
        #expect(report.signedCheckpoints == 3, "crossed 10, 20 and 30 rows")
    }
}
