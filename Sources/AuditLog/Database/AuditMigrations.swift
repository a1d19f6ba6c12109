import GRDB

/// The audit database's schema, as append-only migrations: a shipped migration is never
/// edited; changes come as new ones.
enum AuditMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: audit and review chains") { db in
            try db.execute(sql: """
                CREATE TABLE audit_records (
                    seq INTEGER PRIMARY KEY,
                    request_id TEXT NOT NULL UNIQUE,
                    conversation_id TEXT,
                    customer_pseudonym TEXT,
                    channel TEXT,
                    topic TEXT,
                    partition INTEGER,
                    "offset" INTEGER,
                    received_at TEXT NOT NULL,
                    started_at TEXT,
                    completed_at TEXT NOT NULL,
                    queue_ms INTEGER,
                    inference_ms INTEGER,
                    model_name TEXT,
                    model_quantization TEXT,
                    model_sha256 TEXT,
                    prompt_template_version TEXT,
                    sampling_parameters TEXT,
                    seed INTEGER,
                    prompt_masked TEXT NOT NULL,
                    prompt_sha256 TEXT NOT NULL,
                    prompt_sealed BLOB,
                    response_masked TEXT,
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    confidence REAL,
                    confidence_method TEXT,
                    confidence_threshold REAL,
                    route TEXT NOT NULL CHECK (route IN ('auto', 'escalated')),
                    escalation_reason TEXT,
                    status TEXT NOT NULL CHECK (status IN ('ok', 'error', 'expired', 'rejected')),
                    error_code TEXT,
                    error_message TEXT,
                    worker_id TEXT NOT NULL,
                    recorded_at TEXT NOT NULL,
                    prev_hash TEXT NOT NULL,
                    row_hash TEXT NOT NULL
                );
                CREATE INDEX audit_records_completed_at ON audit_records(completed_at);
                CREATE INDEX audit_records_conversation ON audit_records(conversation_id);
                CREATE INDEX audit_records_status ON audit_records(status, route);

                CREATE TABLE review_records (
                    seq INTEGER PRIMARY KEY,
                    request_id TEXT NOT NULL,
                    reviewer_id TEXT NOT NULL,
                    decision TEXT NOT NULL CHECK (decision IN ('approved', 'corrected', 'rejected')),
                    note TEXT,
                    reviewed_at TEXT NOT NULL,
                    prev_hash TEXT NOT NULL,
                    row_hash TEXT NOT NULL
                );
                CREATE INDEX review_records_request ON review_records(request_id);

                CREATE TABLE checkpoints (
                    id INTEGER PRIMARY KEY,
                    audit_head_seq INTEGER NOT NULL,
                    audit_head_hash TEXT NOT NULL,
                    review_head_seq INTEGER NOT NULL,
                    review_head_hash TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    public_key TEXT,
                    signature TEXT
                );

                CREATE TABLE prune_anchors (
                    id INTEGER PRIMARY KEY,
                    pruned_through_seq INTEGER NOT NULL,
                    pruned_rows INTEGER NOT NULL,
                    anchor_hash TEXT NOT NULL,
                    pruned_before TEXT NOT NULL,
                    pruned_at TEXT NOT NULL,
                    public_key TEXT,
                    signature TEXT
                );

                -- Set to 1 only inside a retention prune's transaction.
                CREATE TABLE audit_maintenance (id INTEGER PRIMARY KEY CHECK (id = 1), pruning INTEGER NOT NULL);
                INSERT INTO audit_maintenance VALUES (1, 0);

                -- Append-only, enforced by SQLite as a first line of defence; the hash chain
                -- detects anyone who drops these triggers.
                CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
                BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END;
                CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
                WHEN (SELECT pruning FROM audit_maintenance) = 0
                BEGIN SELECT RAISE(ABORT, 'audit_records is append-only (use sluice audit prune)'); END;
                CREATE TRIGGER review_records_no_update BEFORE UPDATE ON review_records
                BEGIN SELECT RAISE(ABORT, 'review_records is append-only'); END;
                CREATE TRIGGER review_records_no_delete BEFORE DELETE ON review_records
                BEGIN SELECT RAISE(ABORT, 'review_records is append-only'); END;
                CREATE TRIGGER checkpoints_no_change BEFORE UPDATE ON checkpoints
                BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
                CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
                BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
                """)
            try db.execute(sql: """
                -- Views for auditors using the sqlite3 CLI.
                CREATE VIEW v_escalations AS
                SELECT a.seq, a.request_id, a.conversation_id, a.channel, a.completed_at, a.confidence,
                       a.escalation_reason, a.prompt_masked, a.response_masked,
                       r.decision AS review_decision, r.reviewer_id, r.reviewed_at
                FROM audit_records a
                LEFT JOIN review_records r ON r.seq = (
                    SELECT max(seq) FROM review_records WHERE request_id = a.request_id)
                WHERE a.route = 'escalated';

                CREATE VIEW v_daily_volume AS
                SELECT substr(completed_at, 1, 10) AS day, status, route, count(*) AS requests,
                       round(avg(confidence), 4) AS avg_confidence
                FROM audit_records GROUP BY day, status, route;

                CREATE VIEW v_latency_daily AS
                WITH timed AS (
                    SELECT substr(completed_at, 1, 10) AS day,
                           CAST(round((julianday(completed_at) - julianday(received_at)) * 86400000) AS INTEGER) AS total_ms,
                           inference_ms, queue_ms
                    FROM audit_records WHERE status = 'ok'),
                ranked AS (
                    SELECT day, total_ms,
                           row_number() OVER (PARTITION BY day ORDER BY total_ms) AS position,
                           count(*) OVER (PARTITION BY day) AS n
                    FROM timed)
                SELECT day, max(n) AS requests,
                       min(CASE WHEN position >= 0.50 * n THEN total_ms END) AS p50_ms,
                       min(CASE WHEN position >= 0.95 * n THEN total_ms END) AS p95_ms,
                       min(CASE WHEN position >= 0.99 * n THEN total_ms END) AS p99_ms,
                       max(total_ms) AS max_ms
                FROM ranked GROUP BY day;
                """)
        }
        migrator.registerMigration("v2: reply destination of each request") { db in
            // Where the answer (or error reply) was sent. Added columns take part in a row's
            // hash only when they hold a value, so rows written before keep verifying.
            try db.execute(sql: """
                ALTER TABLE audit_records ADD COLUMN reply_topic TEXT;
                ALTER TABLE audit_records ADD COLUMN reply_partition INTEGER;
                """)
        }
        migrator.registerMigration("v3: grounding of each answer") { db in
            // The knowledge version and passages an answer was grounded in, every escalation
            // reason that held, and the parts of the decision (JSON). Hashed only when set.
            try db.execute(sql: """
                ALTER TABLE audit_records ADD COLUMN knowledge_version TEXT;
                ALTER TABLE audit_records ADD COLUMN knowledge_passages TEXT;
                ALTER TABLE audit_records ADD COLUMN escalation_reasons TEXT;
                ALTER TABLE audit_records ADD COLUMN decision_parts TEXT;
                """)
        }
        migrator.registerMigration("v4: trace of each request") { db in
            // The W3C trace id, so an auditor can follow a request across the producer's
            // services. Hashed only when set.
            try db.execute(sql: "ALTER TABLE audit_records ADD COLUMN trace_id TEXT")
        }
        migrator.registerMigration("v5: answers reused from the answer cache") { db in
            // The request id whose audited answer a cache hit reused. Hashed only when set.
            try db.execute(sql: "ALTER TABLE audit_records ADD COLUMN cached_from TEXT")
        }
        return migrator
    }
}
