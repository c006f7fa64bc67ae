// The corpus step of a batch: every finished dump not yet in OUT/corpus/state.h5 is merged into it (its
// `sources` record the merged dumps' SHA-256, atomically with the state), the corpus outputs are rewritten, and
// with --fit the corpus is fitted by a child `kvstat fit-lowrank OUT/corpus/state.h5` into OUT/corpus/fit.
//
// Nothing here is silently skipped: a corpus state that exists but cannot be loaded stops the step (the summary
// lists it, the batch exits 2, the file is left as it is: it is never rebuilt over); a finished dump that cannot
// join (its state missing, unreadable, of another model) is a note in the summary; a ledger error stops the
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

    var folder: String { output + "/corpus" }
    var statePath: String { folder + "/state.h5" }

    /// Merges, writes and fits the corpus, recording what happened in `summary` (corpusDumps, corpusNotes,
    /// corpusFailure). Throws `BatchError` when the ledger cannot be read or the corpus cannot be written.
    func update(ledger: Ledger, summary: inout BatchSummary) throws {
        var corpus: AnalysisState?
        if FileManager.default.fileExists(atPath: statePath) {
            do { corpus = try AnalysisStateFile.load(statePath) } catch {
                // The error names the file (DumpError's `FILE: what is wrong`); BatchLog does not repeat it.
                let message =
                    "\(error); the corpus was not updated and the file was left as it is: move it away "
                    + "to rebuild the corpus from the finished dumps"
                summary.corpusFailure = (statePath, message)
                log.event("failed", ["path": statePath, "message": message])
                return
            }
        }
        var included = Set(corpus?.sources.compactMap(\.sha256) ?? [])
        // A dump's id is the start of its SHA-256: dumps already in the corpus are skipped without loading.
        let includedIDs = Set(included.map { String($0.prefix(16)) })
        let entries: [LedgerEntry]
        do { entries = try ledger.entries() } catch { throw BatchError("\(error)") }
        var added = 0
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
                guard let sha = state.sources.first?.sha256 else {
                    note("its state file \(path) records no SHA-256 of the dump")
                    continue
                }
                guard !included.contains(sha) else { continue }  // the same bytes under another id: already in
                if corpus == nil { corpus = state } else { try corpus!.merge(state) }
                included.insert(sha)
                added += 1
            } catch {
                note("\(error)")
            }
        }
        guard let corpus else { return }
        summary.corpusDumps = included.count
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            if added > 0 { try AnalysisStateFile.save(corpus, to: statePath, version: KVStatVersion.current) }
            // The outputs are rewritten when the corpus grew, or when they do not describe the saved corpus (a crash
            // or a failed write after the state was saved left them missing or stale).
            if added > 0 || !outputsDescribe(corpus) {
                let report = try StatsFinisher.finish(corpus, version: KVStatVersion.current)
                try OutputDirectory.write(try AnalysisFiles.render(report), to: folder, marking: "batch corpus")
            }
        } catch {
            throw BatchError("cannot write the corpus statistics: \(error)")
        }
        log.event("corpus", ["dumps": included.count, "added": added])
        if let fitArguments, added > 0 || !fitDescribes(corpus) {
            if let failure = fit(fitArguments) { summary.corpusNotes.append("corpus fit failed: \(failure.message)") }
        }
    }

    /// Whether OUT/corpus's stats.json and report.html exist and stats.json counts the corpus's sources and tokens.
    func outputsDescribe(_ corpus: AnalysisState) -> Bool {
        guard FileManager.default.fileExists(atPath: folder + "/report.html"),
            let data = FileManager.default.contents(atPath: folder + "/stats.json"),
            let report = try? JSONText.decode(StatsReport.self, from: data)
        else { return false }
        return report.sources.count == corpus.sources.count
            && report.dump.tokens == DumpSummary.combining(corpus.sources).tokens
    }

    /// Whether OUT/corpus/fit's manifest was fitted on the corpus as it is (its token count).
    func fitDescribes(_ corpus: AnalysisState) -> Bool {
        guard let data = FileManager.default.contents(atPath: folder + "/fit/manifest.json"),
            let manifest = try? JSONText.decode(FitReport.self, from: data)
        else { return false }
        return manifest.source.tokens == DumpSummary.combining(corpus.sources).tokens
    }

    /// Fits the corpus state into a temporary folder by a child, checks its manifest, and renames it to
    /// OUT/corpus/fit (replacing the previous fit). nil on success, else why not.
    func fit(_ arguments: [String]) -> BatchFailure? {
        let temporary = "\(folder)/fit.tmp-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: temporary) }  // best effort: a rerun removes `*.tmp*`
        let command = FitLowrankArguments(source: statePath, output: temporary, passThrough: arguments)
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
