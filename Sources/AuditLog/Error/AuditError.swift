import GRDB

/// The one error type of the audit log. `code` says what an operator must do about it.
public struct AuditError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Another connection holds the lock longer than the busy timeout (retry later).
        public static let locked = Code("locked")
        /// The disk or the database's page limit is full: nothing was written.
        public static let full = Code("full")
        /// The file or its directory is read-only.
        public static let readOnly = Code("readOnly")
        /// The file is not an SQLite database or is damaged.
        public static let corrupt = Code("corrupt")
        /// The file cannot be opened (missing directory, permissions).
        public static let cannotOpen = Code("cannotOpen")
        /// A disk I/O error.
        public static let io = Code("io")
        /// A request or argument the log refuses (unknown request id, retention rules).
        public static let invalidArgument = Code("invalidArgument")
        /// A key (HMAC, sealing, signing) is missing or malformed.
        public static let key = Code("key")
        /// Any other SQLite error.
        public static let database = Code("database")
    }

    public let code: Code
    public let message: String
    /// SQLite's primary result code, when SQLite raised the error.
    public let sqliteCode: Int32?
    public let file: String
    public let line: UInt

    /// True when the same write may succeed later unchanged (lock contention).
    public var isRetriable: Bool { code == .locked }

    public init(code: Code, message: String, sqliteCode: Int32? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.message = message
        self.sqliteCode = sqliteCode
        self.file = file
        self.line = line
    }

    public var description: String { "AuditError.\(code): \(message)" }

    /// Classifies an error thrown by GRDB/SQLite.
    static func wrap(_ error: any Error, context: String, file: String = #fileID, line: UInt = #line) -> AuditError {
        if let error = error as? AuditError { return error }
        guard let error = error as? DatabaseError else {
            return AuditError(code: .database, message: "\(context): \(error)", file: file, line: line)
        }
        let primary = error.resultCode.primaryResultCode
        let code: Code
        switch primary {
        case .SQLITE_BUSY, .SQLITE_LOCKED: code = .locked
        case .SQLITE_FULL: code = .full
        case .SQLITE_READONLY: code = .readOnly
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: code = .corrupt
        case .SQLITE_CANTOPEN: code = .cannotOpen
        case .SQLITE_IOERR: code = .io
        default: code = .database
        }
        return AuditError(
            code: code,
            message: "\(context): \(error.message ?? "\(error.resultCode)")",
            sqliteCode: primary.rawValue,
            file: file,
            line: line
        )
    }
}
