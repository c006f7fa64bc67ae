// Maps kvstat's errors to one stderr line and a documented exit code (sysexits.h values).
import ArgumentParser
import Foundation
import KVStat

/// Runs a subcommand body, turning a `DumpError` into `kvstat: error: <file>: <dataset>: <message>` (or,
/// with `json`, an `{"event": "error", …}` object) and its category's exit code.
func reportingErrors(json: Bool = false, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as DumpError {
        let code = exitCode(for: error.category)
        if json {
            ProgressLine.event(["event": "error", "message": error.description, "exit_code": Int(code)])
            throw ExitCode(code)
        }
        let colour = isatty(STDERR_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        let prefix = colour ? "\u{1B}[31mkvstat: error:\u{1B}[0m" : "kvstat: error:"
        FileHandle.standardError.write(Data("\(prefix) \(error)\n".utf8))
        throw ExitCode(code)
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        // Anything else (a LAPACK routine that did not converge, say) is kvstat's problem: one line, exit 70.
        FileHandle.standardError.write(Data("kvstat: error: \(error)\n".utf8))
        throw ExitCode(70)  // EX_SOFTWARE
    }
}

func exitCode(for category: DumpError.Category) -> Int32 {
    switch category {
    case .cannotOpen: return 66  // EX_NOINPUT
    case .notReadable, .badLayout, .badData, .unavailableFilter: return 65  // EX_DATAERR
    case .cannotWrite: return 73  // EX_CANTCREAT
    }
}
