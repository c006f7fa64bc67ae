// `kvstat merge STATE... -o DIR`: combines saved accumulators (token ranges, sequences or dumps of one
// model) and writes the same outputs as `analyze` would for all their tokens together.
import ArgumentParser
import Foundation
import KVStat

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge state files saved by `analyze --save-state` and write the combined statistics.",
        discussion:
            "The states must come from the same model (layers, kv heads, head_dim), the same layers and the same "
            + "--only, --center, --dct-window and --all-pairs; --align-rank and --outlier-factor are taken from the "
            + "first state. States of dumps with and without queries merge on the tensor kinds they share (stats.json "
            + "says how many dumps each kind holds). A folder holding a state.h5 (a batch's OUT/corpus or OUT/<id>) "
            + "stands for that file. The result equals one analysis of all the states' tokens (docs/statistics.md)."
    )

    @Argument(
        help: ArgumentHelp(
            "State files (HDF5, from analyze --save-state or merge --save-state), or folders holding a state.h5 "
                + "(a batch's OUT/corpus).",
            valueName: "state"))
    var states: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("Output directory.", valueName: "dir"))
    var output: String

    @Option(help: ArgumentHelp("Also save the merged accumulators, to merge further later.", valueName: "file"))
    var saveState: String?

    @Flag(help: "No messages on stderr.")
    var quiet = false

    @Flag(
        help: """
            Write into an -o folder holding files kvstat did not write, and replace a --save-state file that is not a \
            kvstat state file (never an input).
            """)
    var force = false

    func validate() throws {
        guard !states.isEmpty else { throw ValidationError("give at least one state file") }
    }

    func run() throws {
        try reportingErrors {
            let markFolder = try checkOutputs()  // exit 73 before any work
            let states = try resolvedStates()
            var merged = try AnalysisStateFile.load(states[0])
            var parts: [(path: String, sources: [DumpSummary])] = [(states[0], merged.sources)]
            for path in states.dropFirst() {
                let next = try AnalysisStateFile.load(path)
                // Name both files: the earlier one holding the same tokens, or the first (whose model and
                // options every state must share).
                if let earlier = parts.first(where: { AnalysisState.overlap($0.sources, next.sources) != nil }),
                    let (a, b) = AnalysisState.overlap(earlier.sources, next.sources)
                {
                    throw DumpError(
                        .badData,
                        "holds tokens \(earlier.path) already holds "
                            + "(\(DumpSummary.describeOverlap(b, a))); merging them would count those tokens twice",
                        file: path)
                }
                do {
                    if let note = try merged.merge(next) {
                        FileHandle.standardError.write(Data("kvstat: note: \(path): \(note)\n".utf8))
                    }
                } catch let error as DumpError where error.file == nil {
                    throw DumpError(error.category, "cannot be merged with \(states[0]): \(error.message)", file: path)
                }
                parts.append((path, next.sources))
            }
            if let saveState { try AnalysisStateFile.save(merged, to: saveState, version: KVStatVersion.current) }
            let report = try StatsFinisher.finish(merged, version: KVStatVersion.current)
            try AnalysisOutputs.write(report, to: output, quiet: quiet, marking: markFolder ? "merge" : nil)
        }
    }

    /// The state files: each argument, or `ARG/state.h5` for a folder. A folder without one is exit 66, naming
    /// the corpora in its subfolders when it is a batch's OUT/corpus of several models.
    func resolvedStates() throws(DumpError) -> [String] {
        try states.map { path throws(DumpError) in
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
                return path
            }
            let file = (path as NSString).appendingPathComponent("state.h5")
            if FileManager.default.fileExists(atPath: file) { return file }
            let corpora = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().filter {
                FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent($0 + "/state.h5"))
            }
            let hint =
                corpora.isEmpty
                ? "give a state file, or a folder holding one (a batch's OUT/corpus or OUT/<id>)"
                : "it holds one batch corpus per model (\(corpora.joined(separator: ", "))): name those folders, "
                    + "e.g. \((path as NSString).appendingPathComponent(corpora[0]))"
            throw DumpError(.cannotOpen, "is a folder without a state.h5; \(hint)", file: path)
        }
    }
}
