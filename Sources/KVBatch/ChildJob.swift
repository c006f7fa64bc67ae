// One dump's work in child processes: `kvstat analyze` (and `fit-lowrank`) into OUT/<id>.tmp-<pid>/, then
// the folder renamed to OUT/<id>. A child that crashes (even inside the HDF5 C library) fails only its dump.
import Foundation

final class ChildJob: @unchecked Sendable {
    // @unchecked Sendable: `result` is written once on the worker thread before `onFinish` runs and read by
    // the scheduler only after that signal (`isFinished` is read under `lock`).
    let executable: String, dump: String, output: String, id: String
    let threads: Int
    let analyzeArguments: [String]
    let fitArguments: [String]?
    private let onFinish: @Sendable () -> Void
    private let lock = NSLock()
    private var result: Result<(tokens: Int, seconds: Double), BatchFailure>?

    init(executable: String, dump: String, output: String, id: String, threads: Int, analyzeArguments: [String],
         fitArguments: [String]?, onFinish: @escaping @Sendable () -> Void) {
        (self.executable, self.dump, self.output, self.id, self.threads) = (executable, dump, output, id, threads)
        (self.analyzeArguments, self.fitArguments, self.onFinish) = (analyzeArguments, fitArguments, onFinish)
    }

    var isFinished: Bool { lock.withLock { result != nil } }

    func outcome() -> Result<(tokens: Int, seconds: Double), BatchFailure> { lock.withLock { result! } }

    /// Starts the work on its own thread.
    func start() throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BatchFailure("\(executable) is not executable")
        }
        Thread.detachNewThread { [self] in
            let outcome = work()
            lock.withLock { result = outcome }
            onFinish()
        }
    }

    private func work() -> Result<(tokens: Int, seconds: Double), BatchFailure> {
        let start = Date()
        let temporary = "\(output)/\(id).tmp-\(getpid())"
        let final = "\(output)/\(id)"
        try? FileManager.default.removeItem(atPath: temporary)
        let log = temporary + ".log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        var steps: [[String]] = [["analyze", dump, "-o", temporary, "--save-state", temporary + "/state.h5", "--quiet",
                                  "--threads", String(threads)] + analyzeArguments]
        if let fitArguments { steps.append(["fit-lowrank", dump, "-o", temporary + "/fit", "--quiet"] + fitArguments) }
        for arguments in steps {
            if let failure = run(arguments, log: log) {
                try? FileManager.default.removeItem(atPath: temporary)
                return .failure(failure)
            }
        }
        // A child that exits 0 without a stats.json counting tokens did not analyse the dump.
        guard let tokens = Self.tokens(in: temporary + "/stats.json"), tokens > 0 else {
            let found = Self.tokens(in: temporary + "/stats.json") == nil
                ? "wrote no readable stats.json" : "counted 0 tokens"
            try? FileManager.default.removeItem(atPath: temporary)
            return .failure(BatchFailure("kvstat analyze exited 0 but \(found)"))
        }
        try? FileManager.default.removeItem(atPath: final)  // a stale copy from before the content changed id
        guard rename(temporary, final) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            return .failure(BatchFailure("cannot move the finished outputs into place (\(reason))"))
        }
        return .success((tokens, Date().timeIntervalSince(start)))
    }

    /// Runs kvstat with `arguments`, stderr to `log`; nil on success, else why it failed.
    private func run(_ arguments: [String], log: String) -> BatchFailure? {
        FileManager.default.createFile(atPath: log, contents: nil)
        guard let logHandle = FileHandle(forWritingAtPath: log) else { return BatchFailure("cannot create \(log)") }
        defer { try? logHandle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["KVSTAT_DIE_WITH_PARENT"] = String(getpid())
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = logHandle
        do { try process.run() } catch { return BatchFailure("cannot start \(executable): \(error.localizedDescription)") }
        process.waitUntilExit()
        if process.terminationReason == .uncaughtSignal {
            return BatchFailure("kvstat \(arguments[0]) crashed (signal \(process.terminationStatus))")
        }
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let message = Self.errorLine(text) ?? "no message"
            return BatchFailure("\(message) (kvstat \(arguments[0]) exit \(process.terminationStatus))")
        }
        return nil
    }

    /// The tokens stats.json counts, nil when it is missing or unreadable.
    static func tokens(in statsPath: String) -> Int? {
        guard let data = FileManager.default.contents(atPath: statsPath),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let dump = json["dump"] as? [String: Any] else { return nil }
        return dump["tokens"] as? Int
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
