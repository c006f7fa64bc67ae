// The `kvstat` command: subcommands over KV-cache dumps. Parsing and printing only; the work is in KVStat.
import ArgumentParser
import CProcessControl
import Foundation
import HDF5Kit
import KVBatch
import KVStat

@main
struct KVStatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvstat",
        abstract: "Statistics and low-rank fits for LLM key/value-cache dumps in HDF5.",
        discussion:
            "Exit codes: 0 success, 64 usage error, 65 bad input data, 66 input missing or unreadable, 69 needs more "
            + "memory than this machine has, 70 internal error, 73 output not writable (or it would replace an input "
            + "or a user's file), 75 the dump changed while it was read (docs/exit-codes.md).",
        version: KVStatVersion.current,
        subcommands: [
            InspectCommand.self, AnalyzeCommand.self, MergeCommand.self, FitLowrankCommand.self, EvalCommand.self,
            ReportCommand.self, BatchCommand.self, CompressCommand.self, DecompressCommand.self,
        ])

    /// Parses and runs a subcommand. Every failure ends as one stderr line and a documented exit code
    /// (ArgumentParser's own usage errors included: no "Usage:"/"See --help" lines after them), and the
    /// process leaves with `_exit` once its outputs are written: no atexit handler (libhdf5's, OpenSSL's) can
    /// run while a worker thread still holds a file or a digest.
    static func main() {
        dieWithBatchParent()
        _ = kv_install_crash_guard("libhdf5")
        // A metadata call of a sane file takes milliseconds, even on a network file system; one still running
        // after KVSTAT_HDF5_METADATA_TIMEOUT seconds (default 10) is libhdf5 looping on a corrupt file.
        let limit = ProcessInfo.processInfo.environment["KVSTAT_HDF5_METADATA_TIMEOUT"].flatMap(Double.init) ?? 10
        MetadataWatchdog.install(seconds: limit.isFinite && limit > 0 ? limit : 10)
        let arguments = Array(CommandLine.arguments.dropFirst())
        let code: Int32
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            code = 0
        } catch let exit as ExitCode {
            code = exit.rawValue  // already reported by `reportingErrors`
        } catch {
            code = report(error, arguments: arguments)
        }
        fflush(nil)  // every C stream (print's buffered stdout)
        _exit(code)
    }

    /// Help and version requests print in full (exit 0); a usage error prints as `kvstat: error: MESSAGE (see
    /// 'kvstat SUBCOMMAND --help')` on one line, or as a JSON `error` event with --log-json.
    static func report(_ error: Error, arguments: [String]) -> Int32 {
        let code = exitCode(for: error).rawValue
        if code == 0 {
            print(fullMessage(for: error))
            return 0
        }
        let subcommand = configuration.subcommands.map { $0._commandName }.first { arguments.first == $0 }
        let message = message(for: error).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
        let hint = "see 'kvstat \(subcommand.map { $0 + " " } ?? "")--help'"
        // JSON when --log-json is one of kvstat's own options (not the value of batch's --fit).
        let json = arguments.indices.contains {
            arguments[$0] == "--log-json" && ($0 == 0 || arguments[$0 - 1] != "--fit")
        }
        _ = failing(with: "\(message) (\(hint))", code: code, json: json)
        return code
    }

    /// A batch child (`ChildEnvironment.dieWithParent`, KVSTAT_DIE_WITH_PARENT = the batch's pid) asks the
    /// kernel to kill it when the batch exits, so a batch killed with SIGKILL leaves no child writing into its
    /// folder; if the batch is already gone, the child stops at once (exit 70).
    static func dieWithBatchParent() {
        guard let text = ProcessInfo.processInfo.environment[ChildEnvironment.dieWithParent],
            let parent = Int32(text)
        else { return }
        _ = kv_set_parent_death_signal(SIGKILL)
        if getppid() != parent { Foundation.exit(70) }
    }
}
