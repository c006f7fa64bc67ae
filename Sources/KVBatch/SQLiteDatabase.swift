// A minimal owned handle over the SQLite C API: open, execute statements with bound values, read rows.
// C pointers stay in this file.
internal import CSQLite
import Foundation

/// An error from SQLite, with its message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String
    public var description: String { "\(path): ledger database error: \(message)" }
}

/// One SQLite connection (not shared between threads).
final class SQLiteDatabase {
    /// A value bound to or read from a statement.
    enum Value: Equatable {
        case integer(Int64)
        case real(Double)
        case text(String)
        case null

        var int: Int? {
            if case .integer(let v) = self { return Int(v) }
            return nil
        }
        var double: Double? {
            switch self {
            case .real(let v): return v
            case .integer(let v): return Double(v)
            default: return nil
            }
        }
        var string: String? {
            if case .text(let v) = self { return v }
            return nil
        }
    }

    let path: String
    private let handle: OpaquePointer

    /// Opens (creating if needed) the database at `path`, waiting up to `busyTimeout` seconds for locks.
    init(path: String, busyTimeout: Double = 10) throws {
        self.path = path
        var db: OpaquePointer?
        let status = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil)
        guard status == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close(db) }
            throw SQLiteError(path: path, message: message)
        }
        handle = db
        sqlite3_busy_timeout(db, Int32(busyTimeout * 1000))
    }

    deinit { sqlite3_close(handle) }

    /// Runs `sql` (one statement) with `bindings` for its `?` parameters and returns every row.
    @discardableResult
    func execute(_ sql: String, _ bindings: [Value] = []) throws -> [[Value]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else { throw error() }
        defer { sqlite3_finalize(statement) }
        for (i, value) in bindings.enumerated() {
            let index = Int32(i + 1)
            let status: Int32
            switch value {
            case .integer(let v): status = sqlite3_bind_int64(statement, index, v)
            case .real(let v): status = sqlite3_bind_double(statement, index, v)
            case .text(let v): status = sqlite3_bind_text(statement, index, v, -1, kv_sqlite_transient())
            case .null: status = sqlite3_bind_null(statement, index)
            }
            guard status == SQLITE_OK else { throw error() }
        }
        var rows: [[Value]] = []
        while true {
            let step = sqlite3_step(statement)
            if step == SQLITE_DONE { break }
            guard step == SQLITE_ROW else { throw error() }
            rows.append(
                (0..<sqlite3_column_count(statement)).map { column in
                    switch sqlite3_column_type(statement, column) {
                    case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
                    case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, column))
                    case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, column)))
                    default: return .null
                    }
                })
        }
        return rows
    }

    private func error() -> SQLiteError { SQLiteError(path: path, message: String(cString: sqlite3_errmsg(handle))) }
}
