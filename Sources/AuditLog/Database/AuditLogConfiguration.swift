import Foundation

/// How the audit log stores, protects and retains rows.
public struct AuditLogConfiguration: Sendable {
    public var keys: AuditKeys
    public var masker: PIIMasker
    /// `PRAGMA synchronous=FULL` (durable at commit even on power loss) when true, `NORMAL`
    /// otherwise (WAL: durable at checkpoint).
    public var synchronousFull: Bool
    /// How long a writer waits for another process's lock before failing with `.locked`.
    public var busyTimeout: TimeInterval
    /// Sign a checkpoint whenever the chain crosses a multiple of this many rows (needs a
    /// signing key; 0 = only on demand).
    public var checkpointEvery: Int64
    /// `prune` refuses to remove rows younger than this (default 183 days: the EU AI Act's
    /// six-month log retention).
    public var minimumRetention: TimeInterval
    /// Caps the file at this many pages (a quota; also how tests simulate a full disk).
    public var maxPageCount: Int?
    /// A writer copies the write-ahead log into the database file once it holds this many
    /// pages (SQLite's `wal_autocheckpoint`; its default is 1,000). Each random-key index page
    /// (request ids) is dirtied by many batches, so a longer log copies it once for many:
    /// 100,000 rows at batch 64 were appended at 17–20k rows/s with 1,000 and 22–24k with
    /// 10,000 (`sluice audit bench`), for a log of up to ~40 MB.
    public var walAutocheckpointPages: Int

    public init(
        keys: AuditKeys,
        masker: PIIMasker,
        synchronousFull: Bool = true,
        busyTimeout: TimeInterval = 10,
        checkpointEvery: Int64 = 1000,
        minimumRetention: TimeInterval = 183 * 86_400,
        maxPageCount: Int? = nil,
        walAutocheckpointPages: Int = 10_000
    ) {
        self.keys = keys
        self.masker = masker
        self.synchronousFull = synchronousFull
        self.busyTimeout = busyTimeout
        self.checkpointEvery = checkpointEvery
        self.minimumRetention = minimumRetention
        self.maxPageCount = maxPageCount
        self.walAutocheckpointPages = walAutocheckpointPages
    }
}
