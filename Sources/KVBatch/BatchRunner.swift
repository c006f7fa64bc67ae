// `kvstat batch`: each dump analysed (and fitted) by a child kvstat process into OUT/<content id>/, with
// every state change committed to the ledger, then the corpus state merged from the finished dumps.
// Crash-safe: outputs appear by renaming a finished temporary folder, and a rerun resumes from the ledger.
import FileDigest
import Foundation
import KVReport
import KVStat

/// What a batch run is asked to do.
public struct BatchOptions: Sendable {
    public var inputs: [String]
    public var output: String
    /// Dumps processed at once; BLAS threads per child = cores ÷ jobs.
    public var jobs = 1
    public var shard: (index: Int, count: Int)?
    /// Extra `analyze` arguments (e.g. `--dct-window 4096`).
    public var analyzeArguments: [String] = []
    /// `fit-lowrank` arguments (e.g. `--method pca --keep-ratio 0.25`); nil: no fit.
    public var fitArguments: [String]?
    /// The kvstat executable children run.
    public var executable: String
    public var logJSON = false
    public var quiet = false
    /// Use an OUT that holds files kvstat did not write.
    public var force = false

    public init(inputs: [String], output: String, executable: String) {
        self.inputs = inputs
        self.output = output
        self.executable = executable
    }
}

/// The end-of-run summary.
public struct BatchSummary: Sendable {
    public var done = 0, skipped = 0
    public var failed: [(path: String, message: String)] = []
    public var tokens = 0
    public var bytesRead = 0
    public var seconds = 0.0
    /// Dumps in the corpora, all models together.
    public var corpusDumps = 0
    /// Each corpus written: its folder (OUT/corpus, or OUT/corpus/<model> when there are several models), its
    /// dumps, and how many dumps each tensor kind holds.
    public var corpora: [(folder: String, dumps: Int, dumpsPerKind: [String: Int])] = []
    /// Finished dumps that could not join the corpus, and a corpus fit that failed, one sentence each.
    public var corpusNotes: [String] = []
    /// The corpus state that exists but could not be loaded (the corpus was left as it was).
    public var corpusFailure: (path: String, message: String)?
    /// Files among the inputs' folders and globs left out because kvstat wrote them (OUT, marked folders,
    /// state files, ledgers).
    public var ignored = 0
    /// 0 all done, 2 some failed (a dump, or the corpus state), 1 nothing could run.
    public var exitCode: Int32 {
        if failed.isEmpty && corpusFailure == nil { return 0 }
        return done + skipped > 0 ? 2 : 1
    }
}

public final class BatchRunner {
    let options: BatchOptions
    let log: BatchLog
    /// Runs every child (KVStatChild.swift).
    let child: KVStatChild

    public init(_ options: BatchOptions) {
        self.options = options
        log = BatchLog(json: options.logJSON, quiet: options.quiet)
        child = KVStatChild(executable: options.executable)
    }

    public func run() throws -> BatchSummary {
        let start = Date()
        let out = options.output
        // The inputs first, so that a batch with nothing to do leaves no output folder behind.
        let expansion = BatchInputs.expand(options.inputs, output: out)
        if let inside = expansion.insideOutput.first {
            throw BatchError(
                "\(inside): is inside the output folder \(out), whose files kvstat wrote and never "
                    + "reads as dumps; leave it out or choose another -o", exitCode: 64)
        }
        var paths = expansion.paths
        if let shard = options.shard { paths = BatchInputs.shard(paths, index: shard.index, count: shard.count) }
        guard !paths.isEmpty else {
            let ignored = expansion.ignored > 0 ? "; \(expansion.ignored) files kvstat wrote were left out" : ""
            throw BatchError("the inputs name no dumps (folders are searched for *.h5, *.hdf5, *.he5\(ignored))")
        }
        try prepareOutput()
        let lock = try DirectoryLock(directory: out)
        defer { withExtendedLifetime(lock) {} }
        let ledger: Ledger
        do { ledger = try Ledger(path: out + "/ledger.sqlite") } catch { throw BatchError("\(error)") }
        try recover(ledger)

        log.event("start", ["inputs": paths.count, "output": out, "jobs": options.jobs])

        var summary = BatchSummary()
        summary.ignored = expansion.ignored
        var queue: [(id: String, path: String, bytes: Int)] = []
        var queued: Set<String> = []
        for path in paths {
            switch try identify(path, ledger: ledger) {
            case .failure(let failure):
                // No content to hash: the row is keyed by the path itself.
                try record(
                    ledger, LedgerEntry(id: "path:" + path, path: path, state: .failed, message: failure.message))
                summary.failed.append((path, failure.message))
                log.event("failed", ["path": path, "message": failure.message])
            case .success(let (id, bytes)):
                let existing = try ledgerEntry(ledger, id)
                if existing?.state == .done && FileManager.default.fileExists(atPath: "\(out)/\(id)/stats.json") {
                    summary.skipped += 1
                    continue
                }
                guard queued.insert(id).inserted else { continue }  // the same content under two names
                queue.append((id, path, bytes))
            }
        }
        try process(queue, ledger: ledger, summary: &summary)
        try CorpusUpdater(output: out, fitArguments: options.fitArguments, child: child, log: log)
            .update(ledger: ledger, summary: &summary)
        summary.seconds = Date().timeIntervalSince(start)
        log.summary(summary)
        return summary
    }

    // MARK: steps

    /// OUT must be new, empty or kvstat's (marked, or a batch folder from before markers), unless --force; it
    /// is created and marked as a batch folder (not when --force let the batch into a folder of other files).
    func prepareOutput() throws {
        let out = options.output
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue {
            throw BatchError("\(out): exists and is not a folder; choose another -o")
        }
        var mark = true
        if exists {
            let entries: [String]
            do { entries = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0 != ".lock" } } catch {
                throw BatchError("cannot read output folder \(out) (\(error.localizedDescription))")
            }
            if !entries.isEmpty && !BatchInputs.isKVStatFolder(out) {
                guard options.force else {
                    throw BatchError(
                        "\(out): exists and holds files kvstat did not write; "
                            + "choose another -o, or --force")
                }
                mark = false
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        } catch {
            throw BatchError("cannot create output folder \(out) (\(error.localizedDescription))")
        }
        if mark && !OutputFolderMarker.isMarked(out) {
            do { try OutputFolderMarker.mark(out, command: "batch") } catch { throw BatchError("\(error)") }
        }
    }

    /// After a crash: temporary folders of dead runs are removed, `running` rows become pending, and a dump
    /// whose output folder was renamed into place before the ledger said so is marked done.
    func recover(_ ledger: Ledger) throws {
        let out = options.output
        // Best effort: a temporary that cannot be removed is harmless (its name carries a dead run's pid, and it is
        // never read) and the next run tries again; OUT/corpus does not exist before the first corpus.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] where name.contains(".tmp-") {
            try? FileManager.default.removeItem(atPath: out + "/" + name)
        }
        // In OUT/corpus and in its per-model subfolders (CorpusUpdater).
        let corpusFolders =
            [out + "/corpus"]
            + ((try? FileManager.default.contentsOfDirectory(atPath: out + "/corpus")) ?? [])
            .filter { ModelSignature(name: $0) != nil }.map { out + "/corpus/" + $0 }
        for folder in corpusFolders {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            for name in names where name.contains(".tmp") {
                try? FileManager.default.removeItem(atPath: folder + "/" + name)
            }
        }
        do {
            try ledger.resetRunning()
            for entry in try ledger.entries()
            where entry.state != .done && FileManager.default.fileExists(atPath: "\(out)/\(entry.id)/stats.json") {
                var done = entry
                done.state = .done
                done.message = nil
                try ledger.record(done)
            }
        } catch { throw BatchError("\(error)") }
    }

    /// The content id of a dump: the first 16 hex digits of its SHA-256 (a folder dump's: of its files' bytes
    /// in name order, `BatchInputs.contents`), cached by (path, size, mtime). A dump that cannot be read fails
    /// alone; a ledger that cannot be read or written stops the batch (`BatchError`).
    func identify(_ path: String, ledger: Ledger) throws -> Result<(String, Int), BatchFailure> {
        let files: [String]
        let size: Int
        let mtime: Int
        switch BatchInputs.contents(path) {
        case .failure(let failure): return .failure(failure)
        case .success(let found): (files, size, mtime) = found
        }
        let cached: String?
        do { cached = try ledger.cachedID(path: path, size: size, mtimeNanoseconds: mtime) } catch {
            throw BatchError("\(error)")
        }
        if let cached { return .success((cached, size)) }
        guard let digest = try? SHA256.hex(ofFilesAt: files) else {
            return .failure(BatchFailure("cannot read the file to hash it"))
        }
        let id = String(digest.prefix(16))
        do { try ledger.rememberID(id, path: path, size: size, mtimeNanoseconds: mtime) } catch {
            throw BatchError("\(error)")
        }
        return .success((id, size))
    }

    /// Runs the queue with at most `jobs` children at once.
    func process(_ queue: [(id: String, path: String, bytes: Int)], ledger: Ledger, summary: inout BatchSummary) throws
    {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let threads = max(1, cores / max(options.jobs, 1))
        let finished = DispatchSemaphore(value: 0)
        var running: [Int: (id: String, path: String, bytes: Int, job: ChildJob)] = [:]
        var next = 0
        while next < queue.count || !running.isEmpty {
            while running.count < options.jobs && next < queue.count {
                let index = next
                let item = queue[next]
                next += 1
                try record(ledger, LedgerEntry(id: item.id, path: item.path, state: .running))
                log.event("running", ["path": item.path, "id": item.id])
                let job = ChildJob(
                    child: child, dump: item.path, output: options.output, id: item.id,
                    threads: threads, analyzeArguments: options.analyzeArguments, fitArguments: options.fitArguments
                ) {
                    finished.signal()
                }
                do {
                    try job.start()
                    running[index] = (item.id, item.path, item.bytes, job)
                } catch {
                    try record(
                        ledger, LedgerEntry(id: item.id, path: item.path, state: .failed, message: error.message))
                    summary.failed.append((item.path, error.message))
                    log.event("failed", ["path": item.path, "id": item.id, "message": error.message])
                }
            }
            guard !running.isEmpty else { continue }
            finished.wait()
            for (index, item) in running {
                guard let outcome = item.job.outcome() else { continue }
                running[index] = nil
                switch outcome {
                case .success(let (tokens, seconds)):
                    try record(
                        ledger,
                        LedgerEntry(
                            id: item.id, path: item.path, state: .done, tokens: tokens, bytes: item.bytes,
                            seconds: seconds))
                    summary.done += 1
                    summary.tokens += tokens
                    summary.bytesRead += item.bytes
                    log.event(
                        "done",
                        [
                            "path": item.path, "id": item.id, "tokens": tokens,
                            "seconds": (seconds * 100).rounded() / 100,
                        ])
                case .failure(let failure):
                    try record(
                        ledger, LedgerEntry(id: item.id, path: item.path, state: .failed, message: failure.message))
                    summary.failed.append((item.path, failure.message))
                    log.event("failed", ["path": item.path, "id": item.id, "message": failure.message])
                }
            }
        }
    }

    func record(_ ledger: Ledger, _ entry: LedgerEntry) throws {
        do { try ledger.record(entry) } catch { throw BatchError("\(error)") }
    }

    func ledgerEntry(_ ledger: Ledger, _ id: String) throws -> LedgerEntry? {
        do { return try ledger.entry(id) } catch { throw BatchError("\(error)") }
    }
}

/// Why one dump failed (its child's last error line, or how it died).
public struct BatchFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
