import ArgumentParser
import AuditLog
import Foundation

struct AuditQueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "List audit rows matching filters.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, csv }

    @OptionGroup var options: AuditOptions
    @Option(help: "Completed at or after this time (RFC 3339 or YYYY-MM-DD).") var since: TimeArgument?
    @Option(help: "Completed before this time.") var until: TimeArgument?
    @Option(help: "ok, error, expired or rejected.") var status: AuditRecord.Status?
    @Flag(help: "Only escalated requests.") var escalated = false
    @Option(name: .customLong("request-id")) var requestID: String?
    @Option(help: "Conversation id.") var conversation: String?
    @Option(name: .customLong("trace-id"), help: "W3C trace id (32 hex digits), as in the request's traceparent header.") var traceID: String?
    @Option(name: .customLong("min-confidence")) var minConfidence: Double?
    @Option(name: .customLong("max-confidence")) var maxConfidence: Double?
    @Option(help: "At most this many rows.") var limit: Int?
    @Option(help: "table, json or csv.") var format: Format = .table

    func run() throws {
        var filter = AuditFilter()
        filter.since = since?.date
        filter.until = until?.date
        filter.status = status
        filter.escalatedOnly = escalated
        filter.requestID = requestID
        filter.conversationID = conversation
        filter.traceID = traceID?.lowercased()
        filter.minConfidence = minConfidence
        filter.maxConfidence = maxConfidence
        filter.limit = limit
        let rows = try options.openForReading().query(filter)
        var output = BufferedOutput()
        switch format {
        case .json:
            for row in rows { output.write(AuditRecordJSON.line(row)) }
        case .csv:
            output.write(AuditDatabase.csvHeader)
            for row in rows { output.write(AuditDatabase.csvLine(row)) }
        case .table:
            output.write(["seq", "request_id", "completed_at", "status", "route", "confidence", "reason", "prompt"]
                .joined(separator: "\t"))
            for row in rows {
                output.write([
                    String(row.seq), row.requestID, CanonicalTime.format(row.completedAt), row.status.rawValue, row.route.rawValue,
                    row.confidence.map { String(format: "%.3f", $0) } ?? "-", row.escalationReason ?? row.errorCode ?? "-",
                    String(row.promptMasked.prefix(60)).replacingOccurrences(of: "\n", with: " "),
                ].joined(separator: "\t"))
            }
        }
        output.flush()
    }
}

struct AuditVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the hash chains, checkpoints and prune anchors (or a JSONL export). Exit 1 when anything was altered."
    )

    @OptionGroup var options: AuditOptions
    @Option(name: .customLong("public-key"), help: "Base64 Ed25519 public key every checkpoint must be signed with.")
    var publicKey: String?
    @Option(help: "Verify this JSONL export instead of the database.") var export: String?

    func run() throws {
        let report: VerificationReport
        if let export {
            let text = try String(contentsOfFile: export, encoding: .utf8)
            report = try AuditDatabase.verifyExport(lines: text.components(separatedBy: "\n"), publicKey: publicKey)
        } else {
            report = try options.openForReading().verify(publicKey: publicKey)
        }
        if let failure = report.failure {
            print("TAMPERED: \(failure)")
            throw ExitCode(1)
        }
        print("intact: \(report.auditRows) audit rows (head seq \(report.auditHead.seq), hash \(report.auditHead.hash.prefix(16))…), "
              + "\(report.reviewRows) reviews, \(report.checkpoints) checkpoints (\(report.signedCheckpoints) signed)"
              + (report.prunedThroughSeq > 0 ? ", pruned through seq \(report.prunedThroughSeq)" : ""))
        if publicKey == nil && report.signedCheckpoints > 0 {
            print("note: signatures were checked against the keys stored with them; pass --public-key to pin the signer")
        }
    }
}

struct AuditStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Volumes by status and route, escalation rate, confidence distribution, latency percentiles."
    )

    @OptionGroup var options: AuditOptions
    @Option(help: "Only rows completed at or after this time.") var since: TimeArgument?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let stats = try options.openForReading().stats(since: since?.date)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(stats), as: UTF8.self))
            return
        }
        func percent(_ value: Double?) -> String { value.map { String(format: "%.1f%%", $0 * 100) } ?? "-" }
        func ms(_ p: AuditStats.Percentiles) -> String {
            "p50 \(p.p50.map(String.init) ?? "-") ms, p95 \(p.p95.map(String.init) ?? "-") ms, p99 \(p.p99.map(String.init) ?? "-") ms"
        }
        print("requests: \(stats.total)")
        print("by status: " + stats.byStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("by route: " + stats.byRoute.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("escalation rate (of answered): \(percent(stats.escalationRate))")
        print("mean confidence: \(stats.meanConfidence.map { String(format: "%.3f", $0) } ?? "-")")
        print("confidence histogram:")
        let widest = max(1, stats.confidenceHistogram.max() ?? 1)
        for (index, count) in stats.confidenceHistogram.enumerated() {
            let bar = String(repeating: "█", count: count * 40 / widest)
            print(String(format: "  %.1f–%.1f %6d ", Double(index) / 10, Double(index + 1) / 10, count) + bar)
        }
        print("latency end to end: \(ms(stats.totalLatencyMs))")
        print("latency inference:  \(ms(stats.inferenceLatencyMs))")
        print("latency queue:      \(ms(stats.queueLatencyMs))")
    }
}

struct AuditExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export rows (with chain anchors) for a regulator; verify a JSONL export with `audit verify --export`."
    )

    @OptionGroup var options: AuditOptions
    @Option(help: "jsonl or csv.") var format: AuditDatabase.ExportFormat
    @Option(help: "Rows recorded at or after this time.") var since: TimeArgument?
    @Option(help: "Rows recorded before this time.") var until: TimeArgument?

    func run() throws {
        var output = BufferedOutput()
        let count = try options.openForReading().export(format: format, since: since?.date, until: until?.date) { output.write($0) }
        output.flush()
        FileHandle.standardError.write(Data("exported \(count) rows\n".utf8))
    }
}

/// JSON and CSV renderings of one record for `audit query`.
enum AuditRecordJSON {
    static func line(_ record: AuditRecord) -> String {
        var object: [String: Any] = [
            "seq": record.seq, "request_id": record.requestID, "status": record.status.rawValue, "route": record.route.rawValue,
            "received_at": CanonicalTime.format(record.receivedAt), "completed_at": CanonicalTime.format(record.completedAt),
            "prompt_masked": record.promptMasked, "prompt_sha256": record.promptSHA256, "worker_id": record.workerID,
            "recorded_at": CanonicalTime.format(record.recordedAt), "prev_hash": record.prevHash, "row_hash": record.rowHash,
        ]
        let optional: [String: Any?] = [
            "conversation_id": record.conversationID, "customer_pseudonym": record.customerPseudonym, "channel": record.channel,
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "started_at": record.startedAt.map(CanonicalTime.format), "queue_ms": record.queueMs, "inference_ms": record.inferenceMs,
            "model_name": record.modelName, "model_quantization": record.modelQuantization, "model_sha256": record.modelSHA256,
            "prompt_template_version": record.promptTemplateVersion, "sampling_parameters": record.samplingParameters,
            "seed": record.seed, "response_masked": record.responseMasked, "prompt_tokens": record.promptTokens,
            "completion_tokens": record.completionTokens, "confidence": record.confidence,
            "confidence_method": record.confidenceMethod, "confidence_threshold": record.confidenceThreshold,
            "escalation_reason": record.escalationReason, "error_code": record.errorCode, "error_message": record.errorMessage,
            "reply_topic": record.replyTopic, "reply_partition": record.replyPartition,
            "knowledge_version": record.knowledgeVersion, "knowledge_passages": record.knowledgePassages,
            "escalation_reasons": record.escalationReasons, "decision_parts": record.decisionParts, "trace_id": record.traceID,
            "cached_from": record.cachedFrom,
        ]
        for (key, value) in optional { object[key] = value ?? NSNull() }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
