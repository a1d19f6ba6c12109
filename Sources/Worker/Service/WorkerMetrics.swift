import Foundation
import KafkaClient
import Prometheus
import Synchronization

/// The worker's Prometheus metrics (names prefixed `sluice_`), served on `/metrics`.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let queueTime: DurationHistogram
    let timeToFirstToken: DurationHistogram
    let interTokenLatency: DurationHistogram
    let endToEnd: DurationHistogram
    let auditWrite: DurationHistogram
    let batchSize: ValueHistogram
    let tokens: Counter
    let prefillTokens: Counter
    let prefixCacheHitTokens: Counter
    let prefixCacheBytes: Gauge
    let auditFailures: Counter
    let publishFailures: Counter
    let replyFailures: Counter
    let inFlight: Gauge
    let queueDepth: Gauge
    let assignedPartitions: Gauge
    let ready: Gauge
    private let requestCounters: Mutex<[String: Counter]> = Mutex([:])
    private let escalationCounters: Mutex<[String: Counter]> = Mutex([:])
    private let answerCacheCounters: Mutex<[String: Counter]> = Mutex([:])
    private let lagGauges: Mutex<[KafkaTopicPartition: Gauge]> = Mutex([:])
    private let healthGauges: Mutex<[String: Gauge]> = Mutex([:])

    /// `sluice_<metric>_<unit>`; an empty unit for counts without one (gauges of requests, 0/1 flags, info).
    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "sluice", metricName: metric, unitName: unit, helpText: help)
    }

    /// - Parameter latencyObjective: exported as `sluice_latency_objective_seconds` so the p99 alert
    ///   compares against the objective this deployment is configured with.
    public init(model: ModelIdentity, worker: String, latencyObjective: Duration = .seconds(30)) {
        let latency: [Duration] = [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]
        queueTime = registry.makeDurationHistogram(descriptor: Self.name("queue_time", "seconds", "Time from consumption to the start of inference."), labels: [], buckets: latency)
        timeToFirstToken = registry.makeDurationHistogram(descriptor: Self.name("time_to_first_token", "seconds", "Time from joining the batch to the first generated token."), labels: [], buckets: latency)
        interTokenLatency = registry.makeDurationHistogram(
            descriptor: Self.name("inter_token_latency", "seconds", "Duration of one decoding step (one token for every sequence in the batch)."), labels: [],
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1)])
        endToEnd = registry.makeDurationHistogram(descriptor: Self.name("end_to_end_latency", "seconds", "Time from consumption to reply and audit row."), labels: [], buckets: latency)
        auditWrite = registry.makeDurationHistogram(
            descriptor: Self.name("audit_write", "seconds", "Time to write one audit row (batched)."), labels: [],
            buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5)])
        batchSize = registry.makeValueHistogram(
            descriptor: Self.name("batch_size", "sequences", "Sequences decoded together per step."), labels: [], buckets: [1, 2, 4, 8, 16, 32, 64])
        tokens = registry.makeCounter(descriptor: Self.name("generated_tokens", "total", "Tokens generated (rate() gives tokens/s)."), labels: [])
        prefillTokens = registry.makeCounter(
            descriptor: Self.name("prefill_tokens", "total", "Prompt tokens computed (those copied from the prefix cache not included)."), labels: [])
        prefixCacheHitTokens = registry.makeCounter(
            descriptor: Self.name("prefix_cache_hit_tokens", "total", "Prompt tokens whose keys and values were copied from the prefix cache: prefill saved."), labels: [])
        prefixCacheBytes = registry.makeGauge(descriptor: Self.name("prefix_cache", "bytes", "Memory held by the shared-prefix KV cache."), labels: [])
        auditFailures = registry.makeCounter(descriptor: Self.name("audit_write_failures", "total", "Failed audit writes (retried; offsets stay uncommitted)."), labels: [])
        publishFailures = registry.makeCounter(descriptor: Self.name("publish_failures", "total", "Failed Kafka publish attempts."), labels: [])
        replyFailures = registry.makeCounter(
            descriptor: Self.name("reply_failures", "total", "Requests whose reply could not be published for good (ended as errors, dead-lettered)."), labels: [])
        inFlight = registry.makeGauge(descriptor: Self.name("requests_in_flight", "", "Requests held between consumption and commit."), labels: [])
        queueDepth = registry.makeGauge(descriptor: Self.name("queue_depth", "", "Requests queued or decoding in the scheduler."), labels: [])
        assignedPartitions = registry.makeGauge(descriptor: Self.name("assigned_partitions", "", "Request partitions this worker owns."), labels: [])
        ready = registry.makeGauge(descriptor: Self.name("ready", "", "1 when the model is loaded and partitions are assigned."), labels: [])
        registry.makeGauge(
            descriptor: Self.name("model_info", "", "The served model (value 1)."),
            labels: [("name", model.name), ("quantization", model.quantization), ("sha256", model.sha256), ("worker", worker)]
        ).set(to: 1.0)
        registry.makeGauge(descriptor: Self.name("latency_objective", "seconds", "The configured end-to-end latency objective (worker.latency_objective_ms)."), labels: [])
            .set(to: Double(latencyObjective.components.seconds) + Double(latencyObjective.components.attoseconds) / 1e18)
        for status in ["ok", "error", "expired", "rejected"] { _ = requests(status) }
    }

    /// `sluice_requests_total{status}`.
    func requests(_ status: String) -> Counter {
        labelled(requestCounters, "requests", "Requests finished, by status.", label: "status", value: status)
    }

    /// `sluice_escalations_total{reason}`.
    func escalations(_ reason: String) -> Counter {
        labelled(escalationCounters, "escalations", "Escalated answers, by reason.", label: "reason", value: reason)
    }

    /// `sluice_answer_cache_lookups_total{result}`: hit, miss, bypass (not cacheable: sampled
    /// without a seed) or error (the cache could not be read).
    func answerCache(_ result: String) -> Counter {
        labelled(answerCacheCounters, "answer_cache_lookups", "Answer cache lookups, by result.", label: "result", value: result)
    }

    /// The `<name>_total{label=value}` counter, registered on first use.
    private func labelled(_ cache: borrowing Mutex<[String: Counter]>, _ metric: String, _ help: String, label: String, value: String) -> Counter {
        cache.withLock { counters in
            if let counter = counters[value] { return counter }
            let counter = registry.makeCounter(descriptor: Self.name(metric, "total", help), labels: [(label, value)])
            counters[value] = counter
            return counter
        }
    }

    /// `sluice_consumer_lag_messages{topic,partition}`.
    /// 1 while a `/healthz` condition holds (`sluice_health_failing{condition=…}`).
    func health(_ condition: HealthMonitor.Condition) -> Gauge {
        healthGauges.withLock { gauges in
            if let gauge = gauges[condition.rawValue] { return gauge }
            let gauge = registry.makeGauge(
                descriptor: Self.name("health_failing", "", "1 while this /healthz condition holds (the worker reports unhealthy)."),
                labels: [("condition", condition.rawValue)])
            gauges[condition.rawValue] = gauge
            return gauge
        }
    }

    func lag(_ partition: KafkaTopicPartition) -> Gauge {
        lagGauges.withLock { gauges in
            if let gauge = gauges[partition] { return gauge }
            let gauge = registry.makeGauge(
                descriptor: Self.name("consumer_lag", "messages", "Messages of an owned partition not yet consumed (high watermark − position)."),
                labels: [("topic", partition.topic), ("partition", String(partition.partition))])
            gauges[partition] = gauge
            return gauge
        }
    }

    /// Removes the lag gauges of partitions this worker no longer owns.
    func forgetLag(of partitions: [KafkaTopicPartition]) {
        let removed = lagGauges.withLock { gauges in partitions.compactMap { gauges.removeValue(forKey: $0) } }
        for gauge in removed { registry.unregisterGauge(gauge) }
    }

    /// The exposition text.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
