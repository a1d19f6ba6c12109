import Foundation
import AuditLog
import KafkaClient
import Logging

/// Everything a Sluice process can be configured with.
///
/// Loaded by ``ConfigurationLoader`` from the built-in defaults, then `Config/sluice.yaml`
/// (or `--config FILE`), then `SLUICE_*` environment variables, then command-line flags.
/// YAML keys are snake_case; the environment variable of a key is `SLUICE_` followed by its
/// path in upper case joined with `_` (e.g. `topics.dead_letters` → `SLUICE_TOPICS_DEAD_LETTERS`).
public struct SluiceConfiguration: Codable, Sendable, Equatable {
    public var kafka: Kafka
    public var topics: Topics
    public var audit: Audit
    public var worker: WorkerSettings
    public var knowledge: KnowledgeSettings
    public var cache: CacheSettings
    public var log: LogSettings

    public init(kafka: Kafka = Kafka(), topics: Topics = Topics(), audit: Audit = Audit(), worker: WorkerSettings = WorkerSettings(),
                knowledge: KnowledgeSettings = KnowledgeSettings(), cache: CacheSettings = CacheSettings(), log: LogSettings = LogSettings()) {
        self.kafka = kafka
        self.topics = topics
        self.audit = audit
        self.worker = worker
        self.knowledge = knowledge
        self.cache = cache
        self.log = log
    }

    /// The answer cache: automated answers reused by identical later questions (greedy or
    /// seeded requests only), shared by the workers of a host.
    public struct CacheSettings: Codable, Sendable, Equatable {
        /// Off: every request goes to the model.
        public var enabled: Bool = true
        /// The cache file (SQLite). Empty: `answer-cache.sqlite` beside `audit.db`.
        public var db: String = ""
        /// Entries kept (oldest removed first).
        public var maxEntries: Int = 100_000
        /// An entry older than this is not reused (seconds).
        public var maxAgeS: Int = 86_400

        public init() {}

        enum CodingKeys: String, CodingKey {
            case enabled, db
            case maxEntries = "max_entries"
            case maxAgeS = "max_age_s"
        }

        /// The cache file of a worker whose audit log is `auditDB`.
        public func path(auditDB: String) -> String {
            db.isEmpty ? URL(fileURLWithPath: auditDB).deletingLastPathComponent().appendingPathComponent("answer-cache.sqlite").path : db
        }
    }

    /// The worker's logs.
    public struct LogSettings: Codable, Sendable, Equatable {
        /// `text` (one human-readable line per event) or `json` (one JSON object per line).
        public var format: String = "text"
        /// `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`.
        public var level: String = "info"

        public init() {}
    }

    /// Grounded answering: where the bank's knowledge base is, how passages are retrieved and
    /// put to the model, and what an answer must show to go out unreviewed.
    public struct KnowledgeSettings: Codable, Sendable, Equatable {
        /// The knowledge base (SQLite, written by `sluice kb import`). Empty: answers are not
        /// grounded (the model answers `worker.prompt_template` freely) — for the echo model
        /// and experiments, never for customers.
        public var db: String = "data/knowledge.sqlite"
        /// `extractive`: the answer is the approved passage sentence the model finds most likely
        /// (it cannot state a fact the bank did not approve). `generative`: the model writes an
        /// answer after the passages; the grounding checks decide whether it may go out.
        /// `whole_knowledge_base`: the seeds' rule, a baseline for `sluice eval` only.
        public var answerMode: String = "extractive"
        /// Passages retrieved per question.
        public var passages: Int = 3
        /// A passage must contain at least this share of the question's terms (else `no_knowledge`).
        public var minCoverage: Double = 0.35
        /// A generated answer needs at least this share of its content terms in the passages (else `ungrounded`).
        public var minSupport: Double = 0.6
        /// The grounded prompt: {passages}, {history} (earlier turns) and {question}.
        public var template: String = "Bank information:\n{passages}\n\n{history}Customer question: {question}\nAnswer:"
        /// What an escalated customer is told when there is no answer to show (no passage found).
        public var handoffText: String = "A member of our team will get back to you shortly. 您的问题已转交人工客服，我们会尽快回复。"

        public init() {}

        enum CodingKeys: String, CodingKey {
            case db
            case answerMode = "answer_mode"
            case passages
            case minCoverage = "min_coverage"
            case minSupport = "min_support"
            case template
            case handoffText = "handoff_text"
        }
    }

    /// The worker: model, batching, limits, escalation, shutdown.
    public struct WorkerSettings: Codable, Sendable, Equatable {
        /// GGUF file to serve, or `echo` (answers with the prompt; for smoke tests and benchmarks).
        public var model: String = "models/gemma-3-270m-q4_k_m.gguf"
        /// Expected SHA-256 of the model file; the worker refuses to start on a mismatch. Empty: not checked.
        public var modelSha256: String = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
        /// Worker id in replies and audit rows. Empty: host name and process id.
        public var workerId: String = ""
        /// Sequences decoded together.
        public var maxBatchSize: Int = 16
        /// When idle, wait this long for more requests so a burst starts as one batch.
        public var maxWaitMs: Int = 5
        /// Requests held in memory (queued + running) at most.
        public var queueCapacity: Int = 1024
        /// Pause all partitions when this many requests are held; Kafka keeps the backlog.
        public var queueHighWater: Int = 512
        /// Resume below this many.
        public var queueLowWater: Int = 256
        /// Near the high water, stop taking records for up to this long while the held
        /// requests fall to the low water, before polling on and pausing (0: pause at once).
        public var intakeHoldMs: Int = 250
        /// A batch-priority request waiting this long is served like an interactive one.
        public var agingMs: Int = 5_000
        /// Topics whose requests default to `batch` priority.
        public var batchTopics: [String] = []
        /// Topics a request may name as its reply address (`reply_to`, `reply-to`,
        /// `kafka_replyTopic`) besides `topics.replies`: exact names, or prefixes ending in `*`.
        /// The request, escalation and dead-letter topics and `__*` are never valid.
        public var replyTopics: [String] = []
        /// Longest prompt accepted, in UTF-8 bytes.
        public var maxPromptBytes: Int = 16_384
        /// Longest prompt accepted, in model tokens.
        public var maxPromptTokens: Int = 1_536
        /// `max_tokens` when a request gives none.
        public var defaultMaxTokens: Int = 128
        /// Largest `max_tokens` a request may ask for.
        public var maxTokensLimit: Int = 512
        /// Context per sequence (prompt + answer), in tokens.
        public var maxContext: Int = 2_048
        /// Compute threads for the model (0: one per core).
        public var threads: Int = 0
        /// Memory for the shared-prefix KV cache, in MiB (0: off). Prompt prefixes (the grounded
        /// template's instructions and passages) are computed once and reused by every sequence
        /// that starts with them; answers are the same with and without it.
        public var prefixCacheMb: Int = 128
        /// How a customer's question is put to the model; `{prompt}` is replaced by it. Recorded
        /// in the audit log as `prompt_template_version` (an FNV-1a hash of it).
        public var promptTemplate: String = "Customer question: {prompt}\nBank service answer:"
        /// Generation stops before any of these strings.
        public var stopStrings: [String] = ["\n\n", "\nCustomer"]
        /// Answers whose confidence is below this go to a human agent.
        public var escalationThreshold: Double = 0.7
        /// Escalation rules, reason: comma-separated phrases (case-insensitive). Empty: the built-in rules
        /// (human_requested: 转人工, 人工, human agent…; fraud; complaint).
        public var escalationRules: [String: String] = [:]
        /// On SIGTERM, how long running requests may take to finish.
        public var gracePeriodMs: Int = 20_000
        /// How often finished offsets are committed.
        public var commitIntervalMs: Int = 500
        /// HTTP port of /metrics, /healthz and /readyz (0: off).
        public var metricsPort: Int = 9400
        /// `/healthz` fails when audit writes have failed, without one success, for this long.
        public var auditUnhealthyAfterMs: Int = 60_000
        /// `/healthz` fails when the scheduler has had work and made no step for this long.
        public var schedulerStallMs: Int = 120_000
        /// The end-to-end latency objective (p99), exported for the latency alert.
        public var latencyObjectiveMs: Int = 30_000

        public init() {}

        enum CodingKeys: String, CodingKey {
            case model
            case modelSha256 = "model_sha256"
            case workerId = "worker_id"
            case maxBatchSize = "max_batch_size"
            case maxWaitMs = "max_wait_ms"
            case queueCapacity = "queue_capacity"
            case queueHighWater = "queue_high_water"
            case queueLowWater = "queue_low_water"
            case intakeHoldMs = "intake_hold_ms"
            case agingMs = "aging_ms"
            case batchTopics = "batch_topics"
            case replyTopics = "reply_topics"
            case maxPromptBytes = "max_prompt_bytes"
            case maxPromptTokens = "max_prompt_tokens"
            case defaultMaxTokens = "default_max_tokens"
            case maxTokensLimit = "max_tokens_limit"
            case maxContext = "max_context"
            case threads
            case prefixCacheMb = "prefix_cache_mb"
            case promptTemplate = "prompt_template"
            case stopStrings = "stop_strings"
            case escalationThreshold = "escalation_threshold"
            case escalationRules = "escalation_rules"
            case gracePeriodMs = "grace_period_ms"
            case commitIntervalMs = "commit_interval_ms"
            case metricsPort = "metrics_port"
            case auditUnhealthyAfterMs = "audit_unhealthy_after_ms"
            case schedulerStallMs = "scheduler_stall_ms"
            case latencyObjectiveMs = "latency_objective_ms"
        }
    }

    /// Connection to the Kafka cluster.
    public struct Kafka: Codable, Sendable, Equatable {
        /// Bootstrap servers, `host:port`.
        public var brokers: [String] = ["127.0.0.1:19092"]
        /// Client id sent to the brokers.
        public var clientId: String = "sluice"
        /// The consumer group every worker of one deployment shares.
        public var groupId: String = "sluice-workers"
        /// A worker silent for this long is removed from the group and its partitions move.
        public var sessionTimeoutMs: Int = 45_000
        /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
        public var securityProtocol: String = "plaintext"
        /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` (empty: none).
        public var saslMechanism: String = ""
        public var saslUsername: String = ""
        public var saslPassword: String = ""
        /// PEM file of the CA that signed the brokers' certificates (empty: system store).
        public var sslCaLocation: String = ""
        /// Raw librdkafka properties, applied last (any key of librdkafka's CONFIGURATION.md).
        public var properties: [String: String] = [:]

        public init() {}

        enum CodingKeys: String, CodingKey {
            case brokers
            case clientId = "client_id"
            case groupId = "group_id"
            case sessionTimeoutMs = "session_timeout_ms"
            case securityProtocol = "security_protocol"
            case saslMechanism = "sasl_mechanism"
            case saslUsername = "sasl_username"
            case saslPassword = "sasl_password"
            case sslCaLocation = "ssl_ca_location"
            case properties
        }
    }

    /// Topic names and how `sluice topics create` makes them.
    public struct Topics: Codable, Sendable, Equatable {
        /// Topics the workers consume requests from.
        public var requests: [String] = ["sluice.requests"]
        /// Default reply topic, when a request names none.
        public var replies: String = "sluice.replies"
        /// Escalated answers for human agents.
        public var escalations: String = "sluice.escalations"
        /// Rejected requests, unchanged, with the reason in headers.
        public var deadLetters: String = "sluice.requests.dlq"
        /// Partitions per topic when creating them; bounds how many workers share the load.
        public var partitions: Int = 12
        public var replicationFactor: Int = 1

        public init() {}

        /// Every topic Sluice reads or writes.
        public var all: [String] { requests + [replies, escalations, deadLetters] }

        enum CodingKeys: String, CodingKey {
            case requests, replies, escalations, partitions
            case deadLetters = "dead_letters"
            case replicationFactor = "replication_factor"
        }
    }

    /// The compliance audit log (SQLite).
    public struct Audit: Codable, Sendable, Equatable {
        /// The SQLite file; one per host, shared by the workers on it. Keep it on local disk.
        public var db: String = "data/audit.sqlite"
        /// Base64 HMAC key (>= 16 bytes) for customer pseudonyms. Empty: a fixed development
        /// key, with a warning — set a secret one in production (SLUICE_AUDIT_PSEUDONYM_KEY).
        public var pseudonymKey: String = ""
        /// Lets `sluice run` start without `pseudonym_key`, on a fixed public development key
        /// (pseudonyms anyone can recompute). For development and tests only.
        public var allowDevelopmentKeys: Bool = false
        /// Base64 AES-256 key; when set, original prompts are stored sealed for `sluice audit reveal`.
        public var sealingKey: String = ""
        /// Base64 Ed25519 private key that signs checkpoints (`sluice audit keygen` makes one).
        public var signingKey: String = ""
        /// Sign a checkpoint every this many rows (0: only `sluice audit checkpoint`).
        public var checkpointEvery: Int = 1000
        /// FULL: each batch is on disk at commit. NORMAL: faster, may lose the last batches on power loss.
        public var synchronous: String = "FULL"
        /// How long a writer waits for another process's lock.
        public var busyTimeoutMs: Int = 10_000
        /// `sluice audit prune` refuses to remove rows younger than this.
        public var minRetentionDays: Int = 183
        /// PII kinds to mask: card, cn_id, cn_phone, phone, email, iban.
        public var maskKinds: [String] = PIIKind.allCases.map(\.rawValue)
        /// Extra masking patterns, label: ICU regex (e.g. `account_no: "ACC-[0-9]{8}"`).
        public var maskPatterns: [String: String] = [:]

        public init() {}

        enum CodingKeys: String, CodingKey {
            case db
            case pseudonymKey = "pseudonym_key"
            case allowDevelopmentKeys = "allow_development_keys"
            case sealingKey = "sealing_key"
            case signingKey = "signing_key"
            case checkpointEvery = "checkpoint_every"
            case synchronous
            case busyTimeoutMs = "busy_timeout_ms"
            case minRetentionDays = "min_retention_days"
            case maskKinds = "mask_kinds"
            case maskPatterns = "mask_patterns"
        }
    }

    /// Checks values that decode fine but cannot work; the message names the key.
    public func validate() throws(ConfigurationError) {
        func fail(_ key: String, _ problem: String) -> ConfigurationError {
            ConfigurationError(key: key, message: problem)
        }
        if kafka.brokers.isEmpty { throw fail("kafka.brokers", "at least one broker is required") }
        for broker in kafka.brokers where broker.split(separator: ":").count != 2 {
            throw fail("kafka.brokers", "'\(broker)' is not host:port")
        }
        if kafka.groupId.isEmpty { throw fail("kafka.group_id", "must not be empty") }
        if kafka.sessionTimeoutMs < 1000 { throw fail("kafka.session_timeout_ms", "must be at least 1000") }
        let protocols = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]
        if !protocols.contains(kafka.securityProtocol.lowercased()) {
            throw fail("kafka.security_protocol", "must be one of \(protocols.joined(separator: ", "))")
        }
        if topics.requests.isEmpty || topics.requests.contains(where: \.isEmpty) {
            throw fail("topics.requests", "needs at least one non-empty topic name")
        }
        for (key, name) in [("topics.replies", topics.replies), ("topics.escalations", topics.escalations),
                            ("topics.dead_letters", topics.deadLetters)] where name.isEmpty {
            throw fail(key, "must not be empty")
        }
        if Set(topics.all).count != topics.all.count {
            throw fail("topics", "request, reply, escalation and dead-letter topics must all differ")
        }
        if !(1...10_000).contains(topics.partitions) { throw fail("topics.partitions", "must be 1...10000") }
        if !(1...32).contains(topics.replicationFactor) { throw fail("topics.replication_factor", "must be 1...32") }
        if audit.db.isEmpty { throw fail("audit.db", "must not be empty") }
        let w = worker
        if w.model.isEmpty { throw fail("worker.model", "must name a GGUF file or echo") }
        if !w.promptTemplate.contains("{prompt}") { throw fail("worker.prompt_template", "must contain {prompt}") }
        if !(1...256).contains(w.maxBatchSize) { throw fail("worker.max_batch_size", "must be 1...256") }
        if w.maxWaitMs < 0 { throw fail("worker.max_wait_ms", "must not be negative") }
        if w.queueCapacity < w.maxBatchSize { throw fail("worker.queue_capacity", "must be at least max_batch_size") }
        if !(1...w.queueCapacity).contains(w.queueHighWater) { throw fail("worker.queue_high_water", "must be 1...queue_capacity") }
        if !(0..<w.queueHighWater).contains(w.queueLowWater) { throw fail("worker.queue_low_water", "must be below queue_high_water") }
        if !(0...10_000).contains(w.intakeHoldMs) { throw fail("worker.intake_hold_ms", "must be 0...10000") }
        if w.maxPromptBytes < 1 || w.maxPromptTokens < 1 { throw fail("worker.max_prompt_bytes", "prompt limits must be positive") }
        if !(1...w.maxTokensLimit).contains(w.defaultMaxTokens) { throw fail("worker.default_max_tokens", "must be 1...max_tokens_limit") }
        if !(0...65_536).contains(w.prefixCacheMb) { throw fail("worker.prefix_cache_mb", "must be 0...65536") }
        if w.maxPromptTokens + w.maxTokensLimit > w.maxContext {
            throw fail("worker.max_context", "must hold max_prompt_tokens + max_tokens_limit")
        }
        if !(0...1).contains(w.escalationThreshold) { throw fail("worker.escalation_threshold", "must be 0...1") }
        if w.latencyObjectiveMs <= 0 { throw fail("worker.latency_objective_ms", "must be > 0") }
        if !(0...65_535).contains(w.metricsPort) { throw fail("worker.metrics_port", "must be 0...65535") }
        if w.auditUnhealthyAfterMs < 0 { throw fail("worker.audit_unhealthy_after_ms", "must not be negative") }
        if w.schedulerStallMs < 1_000 { throw fail("worker.scheduler_stall_ms", "must be at least 1000") }
        if w.gracePeriodMs < 0 || w.commitIntervalMs < 10 { throw fail("worker.grace_period_ms", "grace period ≥ 0, commit interval ≥ 10 ms") }
        if !["text", "json"].contains(log.format) { throw fail("log.format", "must be text or json") }
        if Logger.Level(rawValue: log.level) == nil { throw fail("log.level", "must be trace, debug, info, notice, warning, error or critical") }
        let k = knowledge
        if AnswerPipeline.Mode(rawValue: k.answerMode) == nil {
            throw fail("knowledge.answer_mode", "must be one of \(AnswerPipeline.Mode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if !(1...10).contains(k.passages) { throw fail("knowledge.passages", "must be 1...10") }
        if cache.maxEntries < 1 { throw fail("cache.max_entries", "must be at least 1") }
        if cache.maxAgeS < 1 { throw fail("cache.max_age_s", "must be at least 1") }
        if !(0...1).contains(k.minCoverage) { throw fail("knowledge.min_coverage", "must be 0...1") }
        if !(0...1).contains(k.minSupport) { throw fail("knowledge.min_support", "must be 0...1") }
        if !k.template.contains("{question}") || !k.template.contains("{passages}") {
            throw fail("knowledge.template", "must contain {passages} and {question}")
        }
        if !["FULL", "NORMAL"].contains(audit.synchronous.uppercased()) { throw fail("audit.synchronous", "must be FULL or NORMAL") }
        if audit.checkpointEvery < 0 { throw fail("audit.checkpoint_every", "must not be negative") }
        if audit.busyTimeoutMs < 0 { throw fail("audit.busy_timeout_ms", "must not be negative") }
        if audit.minRetentionDays < 0 { throw fail("audit.min_retention_days", "must not be negative") }
        for kind in audit.maskKinds where PIIKind(rawValue: kind) == nil {
            throw fail("audit.mask_kinds", "unknown kind '\(kind)' (known: \(PIIKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
    }
}

extension SluiceConfiguration.Kafka {
    /// The Kafka layer's connection settings.
    public var clientConfiguration: KafkaClientConfiguration {
        KafkaClientConfiguration(
            bootstrapServers: brokers,
            clientID: clientId,
            security: KafkaSecurity(
                protocol: securityProtocol,
                saslMechanism: saslMechanism.isEmpty ? nil : saslMechanism,
                saslUsername: saslUsername.isEmpty ? nil : saslUsername,
                saslPassword: saslPassword.isEmpty ? nil : saslPassword,
                caLocation: sslCaLocation.isEmpty ? nil : sslCaLocation
            ),
            properties: properties
        )
    }
}

/// A configuration value that is missing, malformed or out of range.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The dotted key, e.g. `kafka.brokers`, or the file.
    public var key: String
    public var message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "configuration error at \(key): \(message)" }
}
