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
            "The states must come from the same model (channel counts), the same layers and the same --only, "
            + "--center, --dct-window and --all-pairs; --align-rank and --outlier-factor are taken from the "
            + "first state. The result equals one analysis of all the states' tokens (docs/statistics.md)."
    )

    @Argument(
        help: ArgumentHelp("State files (HDF5, from analyze --save-state or merge --save-state).", valueName: "state"))
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
                    try merged.merge(next)
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
}
