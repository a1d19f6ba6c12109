import Crypto
import Foundation
import GRDB
import GRDBSQLite

/// The audit log: one SQLite file (WAL) per host, shared by every worker process on it.
///
/// Appends are batched, one immediate transaction per batch, so concurrent processes
/// serialise on SQLite's write lock and each batch extends the chain from the true head.
public struct AuditDatabase: Sendable {
    /// The outcome of appending one entry.
    public enum AppendResult: Sendable, Equatable {
        /// Newly stored.
        case appended(AuditRecord)
        /// The request id was already audited: nothing was written; this is the stored row.
        case duplicate(AuditRecord)

        public var record: AuditRecord {
            switch self {
            case .appended(let record), .duplicate(let record): record
            }
        }
    }

    public let path: String
    let pool: DatabasePool
    let configuration: AuditLogConfiguration?

    /// Opens (creating if needed) the log for appending, and migrates the schema. Safe for
    /// any number of processes at once (a host's workers start together on a new file): the
    /// file is created and migrated under an exclusive lock of `PATH.lock`, and the migrator
    /// re-reads what is applied inside it.
    public init(path: String, configuration: AuditLogConfiguration) throws(AuditError) {
        self.path = path
        self.configuration = configuration
        let lock = try Self.lockExclusively(path + ".lock")
        defer { close(lock) }  // closing the descriptor releases the lock
        self.pool = try Self.openPool(path: path, readOnly: false, configuration: configuration)
        do {
            try AuditMigrations.migrator.migrate(pool)
        } catch {
            throw AuditError.wrap(error, context: "migrating \(path)")
        }
    }

    /// An open descriptor of `lockPath` holding an exclusive `flock` (waits for other holders).
    private static func lockExclusively(_ lockPath: String) throws(AuditError) -> Int32 {
        let descriptor = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw AuditError(code: .cannotOpen, message: "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        while flock(descriptor, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let reason = String(cString: strerror(errno))
                close(descriptor)
                throw AuditError(code: .cannotOpen, message: "cannot lock \(lockPath): \(reason)")
            }
        }
        return descriptor
    }

    /// Opens an existing log read-only (queries, verification, export): safe while workers
    /// append.
    public static func openForReading(path: String) throws(AuditError) -> AuditDatabase {
        guard FileManager.default.fileExists(atPath: path) else {
            throw AuditError(code: .cannotOpen, message: "no audit database at \(path)")
        }
        return try AuditDatabase(readOnlyPath: path)
    }

    private init(readOnlyPath path: String) throws(AuditError) {
        self.path = path
        self.configuration = nil
        self.pool = try Self.openPool(path: path, readOnly: true, configuration: nil)
        let known: Bool
        do {
            known = try pool.read { try $0.tableExists("audit_records") }
        } catch {
            throw AuditError.wrap(error, context: "reading \(path)")
        }
        guard known else { throw AuditError(code: .corrupt, message: "\(path) is not a Sluice audit database") }
    }

    private static func openPool(path: String, readOnly: Bool, configuration: AuditLogConfiguration?) throws(AuditError) -> DatabasePool {
        var config = Configuration()
        config.label = "sluice.audit"
        config.readonly = readOnly
        config.busyMode = .timeout(configuration?.busyTimeout ?? 10)
        let synchronous = configuration?.synchronousFull ?? true ? "FULL" : "NORMAL"
        let maxPageCount = configuration?.maxPageCount
        let checkpointPages = configuration?.walAutocheckpointPages ?? 1000
        config.prepareDatabase { db in
            if !readOnly {
                try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
                _ = try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint = \(checkpointPages)")
                if let maxPageCount { _ = try Int.fetchOne(db, sql: "PRAGMA max_page_count = \(maxPageCount)") }
            }
        }
        do {
            return try DatabasePool(path: path, configuration: config)
        } catch {
            throw AuditError.wrap(error, context: "opening \(path)")
        }
    }

    /// Runs `body` in one IMMEDIATE transaction (takes the write lock up front, so the
    /// chain head read inside cannot be stale).
    func write<T>(_ context: String, _ body: (Database) throws -> T) throws(AuditError) -> T {
        do {
            return try pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch {
            throw AuditError.wrap(error, context: context)
        }
    }

    func read<T>(_ context: String, _ body: (Database) throws -> T) throws(AuditError) -> T {
        do {
            return try pool.read(body)
        } catch {
            throw AuditError.wrap(error, context: context)
        }
    }

    // MARK: - Append

    /// Masks, hashes and appends `entries` in one transaction. Entries whose request id is
    /// already stored (or repeated within the batch) are not written again.
    @discardableResult
    public func append(_ entries: [AuditEntry]) throws(AuditError) -> [AppendResult] {
        guard let configuration else { throw AuditError(code: .readOnly, message: "opened for reading") }
        // Privacy work happens before the write lock is taken, on all cores for big batches.
        let prepared = try Self.prepareAll(entries, configuration)
        return try write("appending \(entries.count) audit rows") { db in
            let existing = try Self.records(db, requestIDs: prepared.map(\.requestID))
            var stored = Dictionary(existing.map { ($0.requestID, $0) }, uniquingKeysWith: { first, _ in first })
            var head = try Self.auditHead(db)
            let now = CanonicalTime.normalised(try db.transactionDate)
            let nowText = CanonicalTime.format(now)
            var results: [AppendResult] = []
            results.reserveCapacity(prepared.count)
            var rows: [PreparedRecord] = []
            rows.reserveCapacity(prepared.count)
            for var row in prepared {
                if let previous = stored[row.requestID] {
                    results.append(.duplicate(previous))
                    continue
                }
                row.chain(seq: head.seq + 1, recordedAt: now, recordedAtText: nowText, prevHash: head.hash)
                head = (row.record.seq, row.record.rowHash)
                stored[row.requestID] = row.record
                results.append(.appended(row.record))
                rows.append(row)
            }
            try Self.insert(rows, recordedAtText: nowText, db)
            if let every = Optional(configuration.checkpointEvery), every > 0, configuration.keys.signingKey != nil {
                let lastCheckpointed = try Int64.fetchOne(db, sql: "SELECT max(audit_head_seq) FROM checkpoints") ?? 0
                if head.seq / every > lastCheckpointed / every {
                    try Self.insertCheckpoint(db, configuration.keys)
                }
            }
            return results
        }
    }

    /// Async form of ``append(_:)`` for callers on Swift's cooperative pool: the blocking
    /// SQLite work runs on GRDB's writer queue.
    @discardableResult
    public func append(_ entries: [AuditEntry]) async throws -> [AppendResult] {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { () throws(AuditError) in try append(entries) })
            }
        }
    }

    static func prepareAll(_ entries: [AuditEntry], _ configuration: AuditLogConfiguration) throws(AuditError) -> [PreparedRecord] {
        guard entries.count >= 16 else {
            return try entries.map { entry throws(AuditError) in try prepare(entry, configuration) }
        }
        let chunks = min(ProcessInfo.processInfo.activeProcessorCount, 8)
        let results = PreparedBatch(count: entries.count)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for index in stride(from: chunk, to: entries.count, by: chunks) {
                results.set(index, Result { () throws(AuditError) in try prepare(entries[index], configuration) })
            }
        }
        return try results.values()
    }

    static func prepare(_ entry: AuditEntry, _ configuration: AuditLogConfiguration) throws(AuditError) -> PreparedRecord {
        var record = entry.record
        record.receivedAt = CanonicalTime.normalised(record.receivedAt)
        record.startedAt = record.startedAt.map(CanonicalTime.normalised)
        record.completedAt = CanonicalTime.normalised(record.completedAt)
        record.promptSHA256 = SHA256.hash(data: Data(entry.prompt.utf8)).hexString
        record.promptMasked = configuration.masker.mask(entry.prompt)
        record.responseMasked = entry.response.map(configuration.masker.mask)
        record.customerPseudonym = entry.customerRef.map(configuration.keys.pseudonym(for:))
        do {
            record.promptSealed = try configuration.keys.seal(entry.prompt)
        } catch {
            throw AuditError(code: .key, message: "sealing the prompt of \(record.requestID): \(error)")
        }
        return PreparedRecord(record)
    }

    /// Rows per multi-row INSERT (47 columns each: well inside SQLite's variable limit).
    private static let rowsPerInsert = 16

    private static func insertSQL(rows: Int) -> String {
        let names = AuditRecord.storedFieldNames + ["row_hash"]
        let row = "(" + Array(repeating: "?", count: names.count).joined(separator: ",") + ")"
        return "INSERT INTO audit_records (\(names.map { "\"\($0)\"" }.joined(separator: ", "))) VALUES "
            + Array(repeating: row, count: rows).joined(separator: ",")
    }

    /// Inserts `rows` in order, `rowsPerInsert` at a time through cached prepared statements
    /// bound with SQLite's C API (GRDB's record insert builds a persistence container per row,
    /// and its arguments box every value: together most of the write lock's time).
    private static func insert(_ rows: [PreparedRecord], recordedAtText: String, _ db: Database) throws {
        var start = 0
        var values: [ColumnValue] = []
        while start < rows.count {
            let count = min(rowsPerInsert, rows.count - start)
            let statement = try db.cachedStatement(sql: insertSQL(rows: count))
            values.removeAll(keepingCapacity: true)
            for row in rows[start..<(start + count)] { row.appendInsertValues(to: &values, recordedAtText: recordedAtText) }
            try execute(statement, values, db)
            start += count
        }
    }

    private static func execute(_ statement: Statement, _ values: [ColumnValue], _ db: Database) throws {
        let handle = statement.sqliteStatement
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        defer { sqlite3_reset(handle) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)  // SQLITE_TRANSIENT: SQLite copies
        var code = SQLITE_OK
        for (offset, value) in values.enumerated() where code == SQLITE_OK {
            let index = Int32(offset + 1)
            switch value {
            case .null: code = sqlite3_bind_null(handle, index)
            case .integer(let integer): code = sqlite3_bind_int64(handle, index, integer)
            case .real(let real): code = sqlite3_bind_double(handle, index, real)
            // An empty buffer may have no address, which SQLite would bind as NULL: bind "" and x'' explicitly.
            case .text(let text) where text.isEmpty: code = sqlite3_bind_text(handle, index, "", 0, transient)
            case .text(var text): code = text.withUTF8 { sqlite3_bind_text(handle, index, $0.baseAddress, Int32($0.count), transient) }
            case .blob(let data) where data.isEmpty: code = sqlite3_bind_zeroblob(handle, index, 0)
            case .blob(let data): code = data.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), transient) }
            }
        }
        if code == SQLITE_OK { code = sqlite3_step(handle) }
        guard code == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: statement.sql)
        }
    }

    /// The last row's seq and hash, or the latest prune anchor, or the genesis.
    static func auditHead(_ db: Database) throws -> (seq: Int64, hash: String) {
        if let row = try Row.fetchOne(db, sql: "SELECT seq, row_hash FROM audit_records ORDER BY seq DESC LIMIT 1") {
            return (row["seq"], row["row_hash"])
        }
        if let anchor = try PruneAnchor.order(Column("pruned_through_seq").desc).fetchOne(db) {
            return (anchor.prunedThroughSeq, anchor.anchorHash)
        }
        return (0, AuditChain.genesis)
    }

    static func reviewHead(_ db: Database) throws -> (seq: Int64, hash: String) {
        if let row = try Row.fetchOne(db, sql: "SELECT seq, row_hash FROM review_records ORDER BY seq DESC LIMIT 1") {
            return (row["seq"], row["row_hash"])
        }
        return (0, AuditChain.genesis)
    }

    // MARK: - Lookups

    /// The stored row of `requestID`, if audited. A worker asks for every record it consumes:
    /// the statements are cached per connection, and no transaction is opened around them
    /// (BEGIN/COMMIT showed in its profile) — each sees committed rows, and a row never
    /// changes once written.
    public func record(requestID: String) throws(AuditError) -> AuditRecord? {
        do {
            return try pool.unsafeRead { try Self.records($0, requestIDs: [requestID]).first }
        } catch {
            throw AuditError.wrap(error, context: "looking up \(requestID)")
        }
    }

    /// The stored rows of `requestIDs` (a batch's duplicate check), with statements cached
    /// per batch size.
    static func records(_ db: Database, requestIDs: [String]) throws -> [AuditRecord] {
        guard !requestIDs.isEmpty else { return [] }
        var records: [AuditRecord] = []
        for start in stride(from: 0, to: requestIDs.count, by: 64) {
            let chunk = Array(requestIDs[start..<min(start + 64, requestIDs.count)])
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            // Usually none is stored yet: probe the index for the ids, and read whole rows
            // only for those found (a record fetch sets up every column even for no rows).
            let probe = try db.cachedStatement(sql: "SELECT request_id FROM audit_records WHERE request_id IN (\(placeholders))")
            let found = try String.fetchAll(probe, arguments: StatementArguments(chunk))
            guard !found.isEmpty else { continue }
            let statement = try db.cachedStatement(sql: "SELECT * FROM audit_records WHERE request_id IN (\(placeholders))")
            records += try AuditRecord.fetchAll(statement, arguments: StatementArguments(chunk))
        }
        return records
    }

    /// Which of `requestIDs` are already audited (for skipping replays before inference).
    public func auditedRequestIDs(among requestIDs: [String]) throws(AuditError) -> Set<String> {
        try read("looking up \(requestIDs.count) request ids") { db in
            Set(try Self.records(db, requestIDs: requestIDs).map(\.requestID))
        }
    }

    /// Number of audit rows stored now.
    public func count() throws(AuditError) -> Int {
        try read("counting rows") { try AuditRecord.fetchCount($0) }
    }

    // MARK: - Reviews and checkpoints

    /// Records a human review of an audited request (chained in the review chain).
    @discardableResult
    public func review(requestID: String, reviewer: String, decision: ReviewRecord.Decision, note: String?) throws(AuditError) -> ReviewRecord {
        guard configuration != nil else { throw AuditError(code: .readOnly, message: "opened for reading") }
        guard !reviewer.isEmpty else { throw AuditError(code: .invalidArgument, message: "the reviewer id is empty") }
        return try write("recording a review of \(requestID)") { db in
            guard try AuditRecord.filter(Column("request_id") == requestID).fetchCount(db) == 1 else {
                throw AuditError(code: .invalidArgument, message: "request \(requestID) is not in the audit log")
            }
            let head = try Self.reviewHead(db)
            var review = ReviewRecord(requestID: requestID, reviewerID: reviewer, decision: decision, note: note)
            review.seq = head.seq + 1
            review.reviewedAt = CanonicalTime.normalised(try db.transactionDate)
            review.prevHash = head.hash
            review.rowHash = AuditChain.hash(review)
            try review.insert(db)
            return review
        }
    }

    /// Signs and stores the current heads of both chains now.
    @discardableResult
    public func checkpoint() throws(AuditError) -> ChainCheckpoint {
        guard let configuration else { throw AuditError(code: .readOnly, message: "opened for reading") }
        guard configuration.keys.signingKey != nil else {
            throw AuditError(code: .key, message: "no signing key configured (audit.signing_key)")
        }
        return try write("writing a checkpoint") { db in try Self.insertCheckpoint(db, configuration.keys) }
    }

    @discardableResult
    static func insertCheckpoint(_ db: Database, _ keys: AuditKeys) throws -> ChainCheckpoint {
        let audit = try auditHead(db)
        let review = try reviewHead(db)
        var checkpoint = ChainCheckpoint(
            auditHeadSeq: audit.seq,
            auditHeadHash: audit.hash,
            reviewHeadSeq: review.seq,
            reviewHeadHash: review.hash,
            createdAt: CanonicalTime.format(try db.transactionDate)
        )
        if let key = keys.signingKey {
            checkpoint.publicKey = key.publicKey.rawRepresentation.base64EncodedString()
            checkpoint.signature = try key.signature(for: checkpoint.signedMessage).base64EncodedString()
        }
        try checkpoint.insert(db)
        return checkpoint
    }
}

/// Results of preparing a batch concurrently: a fixed buffer whose slots are each written
/// by exactly one thread, read after all writers finished.
private final class PreparedBatch: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<Result<PreparedRecord, AuditError>?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    func set(_ index: Int, _ result: Result<PreparedRecord, AuditError>) { slots[index] = result }

    func values() throws(AuditError) -> [PreparedRecord] {
        try slots.map { slot throws(AuditError) in try slot!.get() }
    }
}
