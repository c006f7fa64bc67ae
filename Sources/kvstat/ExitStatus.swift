// Maps kvstat's errors to one stderr line and a documented exit code (sysexits.h values).
import ArgumentParser
import Foundation
import KVReport
import KVStat

/// Runs a subcommand body, turning a `DumpError` into `kvstat: error: <file>: <dataset>: <message>` (or,
/// with `json`, an `{"event": "error", …}` object) and its category's exit code.
func reportingErrors(json: Bool = false, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as DumpError {
        throw failing(with: error.description, code: exitCode(for: error.category), json: json)
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        // Anything else (a LAPACK routine that did not converge, say) is kvstat's problem: one line, exit 70.
        throw failing(with: "\(error)", code: 70, json: json)  // EX_SOFTWARE
    }
}

/// Writes one error line (red on a terminal unless NO_COLOR), or a JSON `error` event with `json`, and
/// returns the exit code to throw.
func failing(with message: String, code: Int32, json: Bool, command: String = "kvstat") -> ExitCode {
    if json {
        JSONText.event(["event": "error", "message": message, "exit_code": Int(code)])
    } else {
        let colour = isatty(STDERR_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let prefix = colour ? "\u{1B}[31m\(command): error:\u{1B}[0m" : "\(command): error:"
        FileHandle.standardError.write(Data("\(prefix) \(message)\n".utf8))
    }
    return ExitCode(code)
}

func exitCode(for category: DumpError.Category) -> Int32 {
    switch category {
    case .cannotOpen: return 66  // EX_NOINPUT
    case .notReadable, .badLayout, .badData, .unavailableFilter: return 65  // EX_DATAERR
    case .cannotWrite: return 73  // EX_CANTCREAT
    case .usage: return 64  // EX_USAGE
    case .tooLarge: return 69  // EX_UNAVAILABLE
    case .changedDuringRun: return 75  // EX_TEMPFAIL
    }
}
