import AuditLog
import Foundation
import Testing

/// Query, stats, export, prune and review on a fixture database with known contents:
/// rows r1…r20 one minute apart, confidence (i mod 20)/20, escalated below 0.7,
/// conversations c0…c2, plus two expired and one rejected request.
@Suite("Audit queries, stats, export and retention")
struct QueryExportTests {
    static func fixture() throws -> AuditDatabase {
        let database = try AuditFixture.populated()
        try database.append([
            AuditFixture.entry(21, status: .expired), AuditFixture.entry(22, status: .expired), AuditFixture.entry(23, status: .rejected),
        ])
        return database
    }

    @Test("filters select exactly the matching rows")
    func query() throws {
        let database = try Self.fixture()
        var filter = AuditFilter()
        filter.escalatedOnly = true
        filter.status = .ok
        // Confidence below 0.7: i mod 20 < 14 → r1…r13 (r20 has confidence 0 too).
        #expect(try database.query(filter).map(\.requestID) == (1...13).map { "r\($0)" } + ["r20"])

        filter = AuditFilter()
        filter.conversationID = "c1"
        filter.minConfidence = 0.5
        #expect(try database.query(filter).map(\.requestID) == ["r10", "r13", "r16", "r19"])

        filter = AuditFilter()
        filter.since = AuditFixture.base.addingTimeInterval(5 * 60)
        filter.until = AuditFixture.base.addingTimeInterval(8 * 60)
        #expect(try database.query(filter).map(\.requestID) == ["r5", "r6", "r7"])

        filter = AuditFilter()
        filter.requestID = "r23"
        #expect(try database.query(filter).map(\.status) == [.rejected])

        filter = AuditFilter()
        filter.limit = 2
        #expect(try database.query(filter).count == 2)
    }

    @Test("stats count statuses and routes and compute nearest-rank latency percentiles")
    func stats() throws {
        let stats = try Self.fixture().stats()
        #expect(stats.total == 23)
        #expect(stats.byStatus == ["ok": 20, "expired": 2, "rejected": 1])
        #expect(stats.byRoute["escalated"] == 14 + 3)  // 14 low-confidence answers + 3 non-ok rows with confidence 0
        #expect(stats.escalationRate == 14.0 / 20.0)
        #expect(stats.confidenceHistogram.reduce(0, +) == 20)
        #expect(stats.confidenceHistogram[0] == 2)  // r20 (0.0) and r1 (0.05)
        // End-to-end latency of answer i is 100 + 10·i ms, i = 1…20.
        #expect(stats.totalLatencyMs.p50 == 200)
        #expect(stats.totalLatencyMs.p95 == 290)
        #expect(stats.totalLatencyMs.p99 == 300)
        #expect(stats.inferenceLatencyMs.p50 == 60)
    }

    @Test("the SQL views answer auditors' questions through the sqlite3 CLI")
    func views() throws {
        let database = try Self.fixture()
        let escalations = try sqlite3(database.path, "SELECT count(*), count(review_decision) FROM v_escalations;")
        #expect(escalations.output.trimmingCharacters(in: .whitespacesAndNewlines) == "17|2")
        let volume = try sqlite3(database.path, "SELECT day, status, route, requests FROM v_daily_volume WHERE status = 'ok' ORDER BY route;")
        #expect(volume.output.trimmingCharacters(in: .whitespacesAndNewlines) == "2026-11-18|ok|auto|6\n2026-11-18|ok|escalated|14")
        let latency = try sqlite3(database.path, "SELECT requests, p50_ms, p95_ms, p99_ms FROM v_latency_daily;")
        #expect(latency.output.trimmingCharacters(in: .whitespacesAndNewlines) == "20|200|290|300")
    }

    @Test("a JSONL export verifies on its own, and an edited or truncated export does not")
    func exportVerifies() throws {
        let database = try Self.fixture()
        try database.checkpoint()
        var lines: [String] = []
        let count = try database.export(format: .jsonl, since: nil, until: nil) { lines.append($0) }
        #expect(count == 23 && lines.count == 25)
        let report = try AuditDatabase.verifyExport(lines: lines, publicKey: AuditFixture.keys.publicKey)
        #expect(report.isIntact, "\(String(describing: report.failure))")
        #expect(report.auditRows == 23 && report.signedCheckpoints == 1)

        var edited = lines
        edited[4] = edited[4].replacingOccurrences(of: "answer 4", with: "answer four")
        #expect(edited[4] != lines[4])
        #expect(try AuditDatabase.verifyExport(lines: edited).failure?.seq == 4)

        var truncated = lines
        truncated.remove(at: 23)
        #expect(try AuditDatabase.verifyExport(lines: truncated).failure != nil)
    }

    @Test("a CSV export has a header, one row per record and the chain hashes")
    func exportCSV() throws {
        let database = try Self.fixture()
        var lines: [String] = []
        try database.export(format: .csv, since: nil, until: nil) { lines.append($0) }
        #expect(lines.count == 24)
        #expect(lines[0].hasPrefix("seq,request_id,") && lines[0].hasSuffix(",prev_hash,reply_topic,reply_partition,knowledge_version,knowledge_passages,escalation_reasons,decision_parts,trace_id,cached_from,row_hash"))
        #expect(lines[1].hasPrefix("1,r1,c1,"))
        let stored = try #require(try database.record(requestID: "r1"))
        #expect(lines[1].hasSuffix(",\(stored.prevHash),,,,,,,,,\(stored.rowHash)"), "no reply destination, grounding, trace or cache: eight empty fields")
    }

    @Test("the reply destination (schema v2) is stored and chained; rows without one hash exactly as v1 rows did")
    func replyDestination() throws {
        let database = try AuditFixture.newDatabase()
        var routed = AuditFixture.entry(1)
        routed.record.replyTopic = "app.replies.eu"
        routed.record.replyPartition = 2
        try database.append([routed, AuditFixture.entry(2)])
        let stored = try #require(try database.record(requestID: "r1"))
        #expect(stored.replyTopic == "app.replies.eu" && stored.replyPartition == 2)
        #expect(try database.record(requestID: "r2")?.replyTopic == nil)
        #expect(try database.verify().isIntact)
        var lines: [String] = []
        try database.export(format: .jsonl, since: nil, until: nil) { lines.append($0) }
        #expect(lines[1].contains(#""reply_topic":"app.replies.eu""#) && !lines[2].contains("reply_topic"))
        #expect(try AuditDatabase.verifyExport(lines: lines).isIntact)
        // Editing the destination breaks the row's hash, like any other column.
        var edited = lines
        edited[1] = edited[1].replacingOccurrences(of: "app.replies.eu", with: "app.replies.us")
        #expect(try AuditDatabase.verifyExport(lines: edited).failure?.seq == 1)
        // The chained columns of a row without a destination are v1's, so rows written before
        // the migration keep verifying (their canonical form is unchanged).
        let v1Columns = ["seq", "request_id", "conversation_id", "customer_pseudonym", "channel", "topic", "partition", "offset",
                         "received_at", "started_at", "completed_at", "queue_ms", "inference_ms", "model_name", "model_quantization",
                         "model_sha256", "prompt_template_version", "sampling_parameters", "seed", "prompt_masked", "prompt_sha256",
                         "prompt_sealed", "response_masked", "prompt_tokens", "completion_tokens", "confidence", "confidence_method",
                         "confidence_threshold", "route", "escalation_reason", "status", "error_code", "error_message", "worker_id",
                         "recorded_at", "prev_hash"]
        var csv: [String] = []
        try database.export(format: .csv, since: nil, until: nil) { csv.append($0) }
        #expect(csv[0] == (v1Columns + ["reply_topic", "reply_partition", "knowledge_version", "knowledge_passages", "escalation_reasons",
                                         "decision_parts", "trace_id", "cached_from", "row_hash"]).joined(separator: ","))
        #expect(csv[2].hasSuffix(",,,,,,,,,\(try #require(try database.record(requestID: "r2")).rowHash)"))
    }

    @Test("prune refuses young rows, removes an old prefix, and leaves a verifiable chain")
    func prune() throws {
        let database = try Self.fixture()
        do {
            _ = try database.prune(before: Date())
            Issue.record("pruned rows younger than the minimum retention")
        } catch {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("183 days"))
        }
        // Rows r1…r23 were recorded now; 200 days from now they may go. Keep the last 3.
        let later = Date().addingTimeInterval(200 * 86_400)
        let firstRemaining = try #require(try database.record(requestID: "r21"))
        let result = try database.prune(before: firstRemaining.recordedAt.addingTimeInterval(0.0005), now: later)
        #expect(result.anchor != nil)
        #expect(try database.count() == Int(23 - result.removedRows))
        let report = try database.verify(publicKey: AuditFixture.keys.publicKey)
        #expect(report.isIntact, "\(String(describing: report.failure))")
        #expect(report.prunedThroughSeq == result.anchor?.prunedThroughSeq)
    }

    @Test("reviews are chained, need an audited request id, and show in v_escalations")
    func review() throws {
        let database = try Self.fixture()
        #expect(throws: AuditError.self) { try database.review(requestID: "nope", reviewer: "alice", decision: .approved, note: nil) }
        let review = try database.review(requestID: "r5", reviewer: "carol", decision: .rejected, note: "wrong fee")
        #expect(review.seq == 3)
        #expect(try database.verify().reviewRows == 3)
        let row = try sqlite3(database.path, "SELECT review_decision, reviewer_id FROM v_escalations WHERE request_id = 'r5';")
        #expect(row.output.trimmingCharacters(in: .whitespacesAndNewlines) == "rejected|carol")
    }
}
