// The batch ledger: every dump's state (pending, running, done, failed with its message) and the content
// ids of input files, in SQLite (write-ahead log, synchronous commits), so a crash at any moment loses
// nothing that was recorded as done.
import Foundation

/// A dump's row in the ledger.
public struct LedgerEntry: Sendable, Equatable {
    public enum State: String, Sendable { case pending, running, done, failed }
    public var id: String
    public var path: String
    public var state: State
    public var message: String?
    public var tokens: Int?
    public var bytes: Int?
    public var seconds: Double?
}

/// OUT/ledger.sqlite.
public final class Ledger {
    private let db: SQLiteDatabase

    public init(path: String) throws {
        db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute(
            """
            CREATE TABLE IF NOT EXISTS dumps(id TEXT PRIMARY KEY, path TEXT NOT NULL, state TEXT NOT NULL, message TEXT,
                tokens INTEGER, bytes INTEGER, seconds REAL, updated TEXT NOT NULL)
            """)
        try db.execute(
            "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT "
                + "NULL, id TEXT NOT NULL)"
        )
    }

    /// The content id recorded for `path` if its size and modification time are unchanged.
    public func cachedID(path: String, size: Int, mtimeNanoseconds: Int) throws -> String? {
        try db.execute(
            "SELECT id FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
            [.text(path), .integer(Int64(size)), .integer(Int64(mtimeNanoseconds))]
        ).first?.first?.string
    }

    public func rememberID(_ id: String, path: String, size: Int, mtimeNanoseconds: Int) throws {
        try db.execute(
            "INSERT OR REPLACE INTO files(path, size, mtime_ns, id) VALUES(?, ?, ?, ?)",
            [.text(path), .integer(Int64(size)), .integer(Int64(mtimeNanoseconds)), .text(id)])
    }

    public func entry(_ id: String) throws -> LedgerEntry? {
        try db.execute("SELECT id, path, state, message, tokens, bytes, seconds FROM dumps WHERE id = ?", [.text(id)])
            .first.map(Self.entry)
    }

    public func entries() throws -> [LedgerEntry] {
        try db.execute("SELECT id, path, state, message, tokens, bytes, seconds FROM dumps ORDER BY path").map(
            Self.entry)
    }

    /// Records `entry` (insert or replace), committed before returning.
    public func record(_ entry: LedgerEntry) throws {
        try db.execute(
            """
            INSERT OR REPLACE INTO dumps(id, path, state, message, tokens, bytes, seconds, updated)
            VALUES(?, ?, ?, ?, ?, ?, ?, datetime('now'))
            """,
            [
                .text(entry.id), .text(entry.path), .text(entry.state.rawValue),
                entry.message.map { .text($0) } ?? .null,
                entry.tokens.map { .integer(Int64($0)) } ?? .null, entry.bytes.map { .integer(Int64($0)) } ?? .null,
                entry.seconds.map { .real($0) } ?? .null,
            ])
    }

    /// Rows left `running` by a run that died become `pending` again.
    public func resetRunning() throws {
        try db.execute("UPDATE dumps SET state = 'pending', updated = datetime('now') WHERE state = 'running'")
    }

    private static func entry(_ row: [SQLiteDatabase.Value]) -> LedgerEntry {
        LedgerEntry(
            id: row[0].string ?? "", path: row[1].string ?? "",
            state: LedgerEntry.State(rawValue: row[2].string ?? "") ?? .pending,
            message: row[3].string, tokens: row[4].int, bytes: row[5].int, seconds: row[6].double)
    }
}
