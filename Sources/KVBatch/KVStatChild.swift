// The one way a batch runs a kvstat child (a dump's analyze and fit-lowrank, the corpus fit): the typed command
// line (ChildArguments.swift), the die-with-parent variable, stderr captured to a log file, and the outcome
// read as the child's real error line or the signal that killed it.
import Foundation

/// The environment a batch gives its children. The kvstat CLI reads the same constant (KVStatCommand).
public enum ChildEnvironment {
    /// Set to the batch's pid: the child asks the kernel (prctl PR_SET_PDEATHSIG) to kill it when that process
    /// exits, and stops at once (exit 70) if its parent is already another process.
    public static let dieWithParent = "KVSTAT_DIE_WITH_PARENT"
}

/// Runs the kvstat executable as a batch child.
struct KVStatChild: Sendable {
    let executable: String

    /// Fails when `executable` cannot be run at all.
    func checkExecutable() throws(BatchFailure) {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BatchFailure("cannot start \(executable): it is not an executable file")
        }
    }

    /// Runs `kvstat <arguments.commandLine>` to its end: stdout discarded, stderr written to `log` (a file of
    /// the batch's, truncated first and removed afterwards, so a child's output never fills a pipe). Returns
    /// nil on exit 0, else why it failed: `cannot start …`, `kvstat CMD crashed (signal N)`, or the child's
    /// error line (`errorLine`) followed by `(kvstat CMD exit N)`.
    func run(_ arguments: some ChildCommandLine, log: String) -> BatchFailure? {
        let commandLine = arguments.commandLine
        let name = "kvstat \(commandLine.first ?? "")"
        defer { try? FileManager.default.removeItem(atPath: log) }  // best effort: its name marks it temporary
        guard FileManager.default.createFile(atPath: log, contents: nil),
            let logHandle = FileHandle(forWritingAtPath: log)
        else { return BatchFailure("cannot create \(log) for \(name)'s messages") }
        defer { try? logHandle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = commandLine
        process.environment = Self.environment()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = logHandle
        do { try process.run() } catch {
            return BatchFailure("cannot start \(executable): \(error.localizedDescription)")
        }
        process.waitUntilExit()
        if process.terminationReason == .uncaughtSignal {
            return BatchFailure("\(name) crashed (signal \(process.terminationStatus))")
        }
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return BatchFailure("\(Self.errorLine(text) ?? "no message") (\(name) exit \(process.terminationStatus))")
        }
        return nil
    }

    /// This process's environment, with `ChildEnvironment.dieWithParent` set to this process's pid.
    static func environment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment[ChildEnvironment.dieWithParent] = String(getpid())
        return environment
    }

    /// The child's error from its stderr: the last line starting `kvstat: error:` (its prefix dropped), else
    /// the last `Error:` line of a usage error (not the usage hint printed after it), else the last line.
    /// stderr is a file, so the child wrote no colour codes.
    static func errorLine(_ text: String) -> String? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if let line = lines.last(where: { $0.hasPrefix("kvstat: error:") }) {
            return String(line.dropFirst("kvstat: error:".count)).trimmingCharacters(in: .whitespaces)
        }
        if let line = lines.last(where: { $0.hasPrefix("Error:") }) { return line }
        return lines.last
    }
}
