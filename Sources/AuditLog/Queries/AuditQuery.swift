import Foundation
import GRDB

/// Which audit rows to select. Times bound `completed_at` (`since` inclusive, `until`
/// exclusive).
public struct AuditFilter: Sendable {
    public var since: Date?
    public var until: Date?
    public var status: AuditRecord.Status?
    public var escalatedOnly = false
    public var requestID: String?
    public var conversationID: String?
    public var traceID: String?
    public var minConfidence: Double?
    public var maxConfidence: Double?
    public var limit: Int?

    public init() {}

    func apply(to request: QueryInterfaceRequest<AuditRecord>) -> QueryInterfaceRequest<AuditRecord> {
        var request = request
        if let since { request = request.filter(Column("completed_at") >= CanonicalTime.format(since)) }
        if let until { request = request.filter(Column("completed_at") < CanonicalTime.format(until)) }
        if let status { request = request.filter(Column("status") == status.rawValue) }
        if escalatedOnly { request = request.filter(Column("route") == AuditRecord.Route.escalated.rawValue) }
        if let requestID { request = request.filter(Column("request_id") == requestID) }
        if let conversationID { request = request.filter(Column("conversation_id") == conversationID) }
        if let traceID { request = request.filter(Column("trace_id") == traceID) }
        if let minConfidence { request = request.filter(Column("confidence") >= minConfidence) }
        if let maxConfidence { request = request.filter(Column("confidence") <= maxConfidence) }
        if let limit { request = request.limit(limit) }
        return request
    }
}

/// Summary figures for `sluice audit stats`.
public struct AuditStats: Sendable, Codable {
    public struct Percentiles: Sendable, Codable {
        public var p50: Int64?
        public var p95: Int64?
        public var p99: Int64?
    }

    public var total: Int
    public var byStatus: [String: Int]
    public var byRoute: [String: Int]
    /// Escalated ÷ answered (`ok`) requests.
    public var escalationRate: Double?
    /// Counts of confidences in [0, 0.1), [0.1, 0.2), … [0.9, 1.0].
    public var confidenceHistogram: [Int]
    public var meanConfidence: Double?
    /// Received → completed, for answered requests.
    public var totalLatencyMs: Percentiles
    public var inferenceLatencyMs: Percentiles
    public var queueLatencyMs: Percentiles

    enum CodingKeys: String, CodingKey {
        case total
        case byStatus = "by_status"
        case byRoute = "by_route"
        case escalationRate = "escalation_rate"
        case confidenceHistogram = "confidence_histogram"
        case meanConfidence = "mean_confidence"
        case totalLatencyMs = "total_latency_ms"
        case inferenceLatencyMs = "inference_latency_ms"
        case queueLatencyMs = "queue_latency_ms"
    }
}

extension AuditDatabase {
    /// Rows matching `filter`, in chain order.
    public func query(_ filter: AuditFilter) throws(AuditError) -> [AuditRecord] {
        try read("querying") { db in try filter.apply(to: AuditRecord.order(Column("seq"))).fetchAll(db) }
    }

    /// Volumes, escalation rate, confidence distribution and latency percentiles.
    public func stats(since: Date? = nil) throws(AuditError) -> AuditStats {
        var filter = AuditFilter()
        filter.since = since
        let rows = try query(filter)
        var byStatus: [String: Int] = [:]
        var byRoute: [String: Int] = [:]
        var histogram = [Int](repeating: 0, count: 10)
        var confidences: [Double] = []
        var total: [Int64] = []
        var inference: [Int64] = []
        var queue: [Int64] = []
        for row in rows {
            byStatus[row.status.rawValue, default: 0] += 1
            byRoute[row.route.rawValue, default: 0] += 1
            if let confidence = row.confidence {
                confidences.append(confidence)
                histogram[min(9, max(0, Int(confidence * 10)))] += 1
            }
            guard row.status == .ok else { continue }
            total.append(CanonicalTime.milliseconds(row.completedAt) - CanonicalTime.milliseconds(row.receivedAt))
            if let value = row.inferenceMs { inference.append(value) }
            if let value = row.queueMs { queue.append(value) }
        }
        let answered = byStatus["ok"] ?? 0
        let escalatedAnswers = rows.filter { $0.status == .ok && $0.route == .escalated }.count
        return AuditStats(
            total: rows.count,
            byStatus: byStatus,
            byRoute: byRoute,
            escalationRate: answered > 0 ? Double(escalatedAnswers) / Double(answered) : nil,
            confidenceHistogram: histogram,
            meanConfidence: confidences.isEmpty ? nil : confidences.reduce(0, +) / Double(confidences.count),
            totalLatencyMs: Self.percentiles(total),
            inferenceLatencyMs: Self.percentiles(inference),
            queueLatencyMs: Self.percentiles(queue)
        )
    }

    /// Nearest-rank percentiles.
    static func percentiles(_ values: [Int64]) -> AuditStats.Percentiles {
        guard !values.isEmpty else { return .init() }
        let sorted = values.sorted()
        func rank(_ p: Double) -> Int64 { sorted[max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1)] }
        return .init(p50: rank(0.50), p95: rank(0.95), p99: rank(0.99))
    }
}
