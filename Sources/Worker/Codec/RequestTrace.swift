import KafkaClient
import W3CTraceContext

/// The W3C trace a request belongs to. A request whose record carries a valid `traceparent`
/// header (OpenTelemetry-instrumented Spring and Python producers set one) continues that
/// trace; one without (or with a malformed header, which the W3C rules say to ignore)
/// starts a new trace here. Every record the worker publishes for the request — reply,
/// escalation, dead letter — carries the same trace id under a new span id, and the trace
/// id goes into the audit row and the request's log lines.
public struct RequestTrace: Sendable, Equatable {
    /// The trace, with the span id of the worker's processing of this record.
    public let context: TraceContext
    /// True when the trace came from the record's `traceparent` header.
    public let continued: Bool

    /// The 32 lower-case hex digits of the trace id.
    public var traceID: String { context.traceID.description }

    /// `traceparent` / `tracestate` headers for a record published on behalf of the request.
    public var headers: [KafkaHeader] {
        var headers = [KafkaHeader(name: "traceparent", string: context.traceParentHeaderValue)]
        if let state = context.traceStateHeaderValue { headers.append(KafkaHeader(name: "tracestate", string: state)) }
        return headers
    }

    /// The trace of a record with these headers: the parent's trace id and flags, the
    /// parent's trace state, a new span id.
    public init(headers: [KafkaHeader]) {
        // W3C caps what a vendor must propagate of `tracestate` at 512 characters; a longer
        // one is dropped rather than echoed on every record.
        let state = headers.last(named: "tracestate")?.stringValue.flatMap { $0.utf8.count <= 512 ? $0 : nil }
        if let parent = headers.last(named: "traceparent")?.stringValue,
           let context = (try? TraceContext(traceParentHeaderValue: parent, traceStateHeaderValue: state))
               ?? (try? TraceContext(traceParentHeaderValue: parent)) {
            self.context = TraceContext(traceID: context.traceID, spanID: .random(), flags: context.flags, state: context.state)
            continued = true
        } else {
            context = TraceContext(traceID: .random(), spanID: .random(), flags: [], state: TraceState())
            continued = false
        }
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.context.traceID == rhs.context.traceID && lhs.context.spanID == rhs.context.spanID && lhs.continued == rhs.continued
    }
}

extension [KafkaHeader] {
    /// These headers with the trace's `traceparent` / `tracestate` in place of any the
    /// original record carried (a dead-letter copy keeps the rest).
    func replacingTrace(with trace: RequestTrace) -> [KafkaHeader] {
        filter { $0.name != "traceparent" && $0.name != "tracestate" } + trace.headers
    }
}
