// One dump's work in child processes: `kvstat analyze` (and `fit-lowrank`) into OUT/<id>.tmp-<pid>/, then
// the folder renamed to OUT/<id>. A child that crashes (even inside the HDF5 C library) fails only its dump.
// The children are run by KVStatChild from typed command lines, and their outputs read back typed
// (ChildOutputs): the dump is done only when its stats.json (and fit manifest) decode.
import Foundation

final class ChildJob: @unchecked Sendable {
    // @unchecked Sendable: `result` is written once on the worker thread before `onFinish` runs, and read by
    // the scheduler under `lock`.
    let child: KVStatChild
    let dump: String, output: String, id: String
    let threads: Int
    let analyzeArguments: [String]
    let fitArguments: [String]?
    private let onFinish: @Sendable () -> Void
    private let lock = NSLock()
    private var result: Result<(tokens: Int, seconds: Double), BatchFailure>?

    init(
        child: KVStatChild, dump: String, output: String, id: String, threads: Int, analyzeArguments: [String],
        fitArguments: [String]?, onFinish: @escaping @Sendable () -> Void
    ) {
        (self.child, self.dump, self.output, self.id, self.threads) = (child, dump, output, id, threads)
        (self.analyzeArguments, self.fitArguments, self.onFinish) = (analyzeArguments, fitArguments, onFinish)
    }

    /// The outcome; nil while the children still run.
    func outcome() -> Result<(tokens: Int, seconds: Double), BatchFailure>? { lock.withLock { result } }

    /// Starts the work on its own thread.
    func start() throws(BatchFailure) {
        try child.checkExecutable()
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
        // Leftovers of this very pid (a previous run with the same pid) are replaced; the name marks them
        // temporary, and a failure to remove them fails the child's own write.
        try? FileManager.default.removeItem(atPath: temporary)
        let log = temporary + ".log"
        func failed(_ failure: BatchFailure) -> Result<(tokens: Int, seconds: Double), BatchFailure> {
            try? FileManager.default.removeItem(atPath: temporary)  // best effort: a rerun removes `*.tmp-*`
            return .failure(failure)
        }
        let analyze = AnalyzeArguments(
            dump: dump, output: temporary, saveState: temporary + "/state.h5",
            threads: threads, passThrough: analyzeArguments)
        if let failure = child.run(analyze, log: log) { return failed(failure) }
        // A child that exits 0 without a stats.json counting tokens did not analyse the dump.
        let tokens: Int
        switch ChildOutputs.analysis(in: temporary) {
        case .failure(let failure): return failed(failure)
        case .success(let report): tokens = report.dump.tokens
        }
        if let fitArguments {
            let fit = FitLowrankArguments(source: dump, output: temporary + "/fit", passThrough: fitArguments)
            if let failure = child.run(fit, log: log) { return failed(failure) }
            if case .failure(let failure) = ChildOutputs.fit(in: temporary + "/fit") { return failed(failure) }
        }
        try? FileManager.default.removeItem(atPath: final)  // a stale copy; if it stays, the rename below says so
        guard rename(temporary, final) == 0 else {
            let reason = String(cString: strerror(errno))
            return failed(BatchFailure("cannot move the finished outputs into place (\(reason))"))
        }
        return .success((tokens, Date().timeIntervalSince(start)))
    }
}
