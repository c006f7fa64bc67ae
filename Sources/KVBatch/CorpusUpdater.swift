// The corpus step of a batch: every finished dump not yet in a corpus is merged into the corpus of its model
// (`ModelSignature`: layers, KV heads, head_dim), whose state's `sources` record the merged dumps' SHA-256
// atomically with the state; the corpus outputs are rewritten, and with --fit each corpus is fitted by a child
// `kvstat fit-lowrank CORPUS/state.h5` into CORPUS/fit.
//
// Where the corpora live: OUT/corpus/ while the batch has seen one model; once a second appears, one subfolder per
// model, OUT/corpus/<signature name>/ (e.g. 6L-12kv-32d), the first corpus moved there whole by renames that a
// rerun completes after a crash (`finishMove`).
//
// Nothing here is silently skipped: a corpus state that exists but cannot be loaded stops that corpus (the summary
// lists it, the batch exits 2, the file is left as it is: it is never rebuilt over); a finished dump that cannot
// join (its state missing, unreadable, refused by the merge) is a note in the summary; a ledger error stops the
// batch.
import Foundation
import KVReport
import KVStat

struct CorpusUpdater {
    let output: String
    /// The `--fit` arguments; nil: no corpus fit.
    let fitArguments: [String]?
    let child: KVStatChild
    let log: BatchLog

    /// OUT/corpus: the corpus itself, or the folder of one corpus per model.
    var root: String { output + "/corpus" }

    /// One model's corpus: its folder (OUT/corpus or OUT/corpus/<name>) and its merged state.
    struct Corpus {
        var folder: String
        var state: AnalysisState
        /// Dumps merged into it by this run.
        var added = 0
        var statePath: String { folder + "/state.h5" }
    }

    /// Merges, writes and fits the corpora, recording what happened in `summary` (corpusDumps, corpora,
    /// corpusNotes, corpusFailure). Throws `BatchError` when the ledger cannot be read or a corpus cannot be
    /// written.
    func update(ledger: Ledger, summary: inout BatchSummary) throws {
        try finishMove()
        var corpora: [ModelSignature: Corpus] = [:]
        // Models whose corpus state exists but does not load: their dumps wait until it is moved away.
        var blocked: Set<ModelSignature> = []
        // OUT/corpus holds one subfolder per model (some may have lost their state.h5, moved away to be rebuilt).
        let perModel = !modelFolders().isEmpty
        var single: ModelSignature?  // the model of the corpus at OUT/corpus, when there is one
        func failed(_ path: String, _ error: Error) {
            // The error names the file (DumpError's `FILE: what is wrong`); BatchLog does not repeat it.
            let message =
                "\(error); the corpus was not updated and the file was left as it is: move it away "
                + "to rebuild the corpus from the finished dumps"
            if summary.corpusFailure == nil { summary.corpusFailure = (path, message) }
            log.event("failed", ["path": path, "message": message])
        }
        if FileManager.default.fileExists(atPath: root + "/state.h5") && perModel {
            // Not a layout kvstat leaves (the move renames OUT/corpus whole): which is the corpus is unclear.
            let message =
                "holds both a corpus state and per-model corpus folders "
                + "(\(modelFolders().map(\.1).joined(separator: ", "))); "
                + "the corpora were not updated: move one of them away"
            summary.corpusFailure = (root + "/state.h5", message)
            log.event("failed", ["path": root + "/state.h5", "message": message])
            return
        } else if FileManager.default.fileExists(atPath: root + "/state.h5") {
            // Of one model, whose signature only the state says: one that does not load stops the whole step.
            do {
                let state = try AnalysisStateFile.load(root + "/state.h5")
                single = state.signature
                if let single { corpora[single] = Corpus(folder: root, state: state) }
            } catch {
                failed(root + "/state.h5", error)
                return
            }
        } else {
            for (signature, folder) in modelFolders()
            where FileManager.default.fileExists(atPath: folder + "/state.h5") {
                do {
                    corpora[signature] = Corpus(folder: folder, state: try AnalysisStateFile.load(folder + "/state.h5"))
                } catch {
                    failed(folder + "/state.h5", error)
                    blocked.insert(signature)
                }
            }
        }
        var included = Set(corpora.values.flatMap { $0.state.sources.compactMap(\.sha256) })
        // A dump's id is the start of its SHA-256: dumps already in a corpus are skipped without loading.
        let includedIDs = Set(included.map { String($0.prefix(16)) })
        let entries: [LedgerEntry]
        do { entries = try ledger.entries() } catch { throw BatchError("\(error)") }
        let waiting = entries.filter { $0.state == .done && !includedIDs.contains($0.id) }.sorted { $0.id < $1.id }
        for entry in waiting {
            let path = "\(output)/\(entry.id)/state.h5"
            func note(_ why: String) { summary.corpusNotes.append("\(entry.path): not merged into the corpus: \(why)") }
            guard FileManager.default.fileExists(atPath: path) else {
                note("its state file \(path) is missing")
                continue
            }
            do {
                let state = try AnalysisStateFile.load(path)
                guard let sha = state.sources.first?.sha256, let signature = state.signature else {
                    note("its state file \(path) records no SHA-256 of the dump")
                    continue
                }
                guard !included.contains(sha), !blocked.contains(signature) else { continue }  // already in, or waits
                if corpora[signature] == nil {
                    corpora[signature] = Corpus(folder: root, state: state, added: 1)
                } else {
                    if let dropped = try corpora[signature]!.state.merge(state) {
                        summary.corpusNotes.append("\(entry.path): merged into the corpus; \(dropped)")
                    }
                    corpora[signature]!.added += 1
                }
                included.insert(sha)
            } catch {
                note("\(error)")
            }
        }
        guard !corpora.isEmpty else { return }
        // One model: OUT/corpus itself; several (or a per-model folder already): a subfolder each, the corpus at
        // OUT/corpus moved into its own first.
        if perModel || corpora.count + blocked.count > 1 {
            if let single { try moveSingleCorpus(to: single) }
            try markRoot()
            for signature in corpora.keys { corpora[signature]!.folder = root + "/" + signature.name }
        }
        for signature in corpora.keys.sorted() {
            try write(corpora[signature]!, summary: &summary)
        }
        summary.corpusDumps = corpora.values.reduce(0) { $0 + $1.state.sources.count }
    }

    /// Saves `corpus` when it grew, rewrites its outputs when they do not describe it, fits it with --fit, and
    /// records it in `summary.corpora`.
    func write(_ corpus: Corpus, summary: inout BatchSummary) throws {
        let state = corpus.state
        do {
            try FileManager.default.createDirectory(atPath: corpus.folder, withIntermediateDirectories: true)
            if corpus.added > 0 {
                try AnalysisStateFile.save(state, to: corpus.statePath, version: KVStatVersion.current)
            }
            // The outputs are rewritten when the corpus grew, or when they do not describe the saved corpus (a crash
            // or a failed write after the state was saved left them missing or stale).
            if corpus.added > 0 || !outputsDescribe(state, in: corpus.folder) {
                let report = try StatsFinisher.finish(state, version: KVStatVersion.current)
                try OutputDirectory.write(try AnalysisFiles.render(report), to: corpus.folder, marking: "batch corpus")
            }
        } catch {
            throw BatchError("cannot write the corpus statistics: \(error)")
        }
        let perKind = state.dumpsPerKind
        summary.corpora.append((corpus.folder, state.sources.count, perKind))
        log.event(
            "corpus",
            ["dumps": state.sources.count, "added": corpus.added, "folder": corpus.folder, "dumps_per_kind": perKind])
        if let fitArguments, corpus.added > 0 || !fitDescribes(state, in: corpus.folder) {
            if let failure = fit(fitArguments, folder: corpus.folder) {
                summary.corpusNotes.append("corpus fit failed: \(failure.message)")
            }
        }
    }

    // MARK: corpus folders

    /// OUT/corpus's subfolders named after a model (`ModelSignature.name`), by signature.
    func modelFolders() -> [(ModelSignature, String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.sorted().compactMap { name in
            var isFolder: ObjCBool = false
            guard let signature = ModelSignature(name: name),
                FileManager.default.fileExists(atPath: "\(root)/\(name)", isDirectory: &isFolder), isFolder.boolValue
            else { return nil }
            return (signature, "\(root)/\(name)")
        }
    }

    /// The name OUT/corpus has while it moves into OUT/corpus/<name>: OUT/corpus-<name>.moving.
    func movingName(_ signature: ModelSignature) -> String { "\(output)/corpus-\(signature.name).moving" }

    /// Moves the one corpus at OUT/corpus into OUT/corpus/<name>: OUT/corpus is renamed to OUT/corpus-<name>.moving,
    /// a new OUT/corpus is made, and the corpus renamed into it. Each step is a rename or a mkdir; a crash between
    /// them leaves OUT/corpus-<name>.moving, which the next run's `finishMove` puts in place.
    func moveSingleCorpus(to signature: ModelSignature) throws {
        let moving = movingName(signature)
        guard rename(root, moving) == 0 else {
            throw BatchError("cannot move \(root) to \(moving) (\(String(cString: strerror(errno))))")
        }
        try finishMove()
    }

    /// Completes a move of OUT/corpus into its model's subfolder that a crash interrupted (see `moveSingleCorpus`).
    func finishMove() throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        for name in names where name.hasPrefix("corpus-") && name.hasSuffix(".moving") {
            guard let signature = ModelSignature(name: String(name.dropFirst(7).dropLast(7))) else { continue }
            let target = root + "/" + signature.name
            do {
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            } catch {
                throw BatchError("cannot create \(root) (\(error.localizedDescription))")
            }
            guard !FileManager.default.fileExists(atPath: target) else {
                throw BatchError(
                    "\(output)/\(name): a corpus moving into \(target), which exists already; move one of them away")
            }
            guard rename(output + "/" + name, target) == 0 else {
                throw BatchError("cannot move \(output)/\(name) to \(target) (\(String(cString: strerror(errno))))")
            }
            try markRoot()
        }
    }

    /// Marks OUT/corpus, once it holds one folder per model, as kvstat's.
    func markRoot() throws {
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            if !OutputFolderMarker.isMarked(root) { try OutputFolderMarker.mark(root, command: "batch corpora") }
        } catch {
            throw BatchError("cannot write the corpus folder \(root): \(error)")
        }
    }

    // MARK: outputs and fit

    /// Whether `folder`'s stats.json and report.html exist and stats.json counts the corpus's sources and tokens.
    func outputsDescribe(_ corpus: AnalysisState, in folder: String) -> Bool {
        guard FileManager.default.fileExists(atPath: folder + "/report.html"),
            let data = FileManager.default.contents(atPath: folder + "/stats.json"),
            let report = try? JSONText.decode(StatsReport.self, from: data)
        else { return false }
        return report.sources.count == corpus.sources.count
            && report.dump.tokens == DumpSummary.combining(corpus.sources).tokens
    }

    /// Whether `folder`/fit's manifest was fitted on the corpus as it is (its token count).
    func fitDescribes(_ corpus: AnalysisState, in folder: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: folder + "/fit/manifest.json"),
            let manifest = try? JSONText.decode(FitReport.self, from: data)
        else { return false }
        return manifest.source.tokens == DumpSummary.combining(corpus.sources).tokens
    }

    /// Fits the corpus state of `folder` into a temporary folder by a child, checks its manifest, and renames it
    /// to `folder`/fit (replacing the previous fit). nil on success, else why not.
    func fit(_ arguments: [String], folder: String) -> BatchFailure? {
        let temporary = "\(folder)/fit.tmp-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: temporary) }  // best effort: a rerun removes `*.tmp*`
        let command = FitLowrankArguments(source: folder + "/state.h5", output: temporary, passThrough: arguments)
        if let failure = child.run(command, log: temporary + ".log") { return failure }
        if case .failure(let failure) = ChildOutputs.fit(in: temporary) { return failure }
        let final = folder + "/fit"
        if FileManager.default.fileExists(atPath: final) {
            do { try FileManager.default.removeItem(atPath: final) } catch {
                return BatchFailure("cannot replace \(final) (\(error.localizedDescription))")
            }
        }
        guard rename(temporary, final) == 0 else {
            return BatchFailure("cannot move it into place (\(String(cString: strerror(errno))))")
        }
        log.event("corpus fit", ["output": final])
        return nil
    }
}
