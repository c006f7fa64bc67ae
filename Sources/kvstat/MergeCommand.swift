// `kvstat merge STATE... -o DIR`: combines saved accumulators (token ranges, sequences or dumps of one
// model) and writes the same outputs as `analyze` would for all their tokens together.
import ArgumentParser
import Foundation
import KVStat

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge state files saved by `analyze --save-state` and write the combined statistics.",
        discussion: "The states must come from the same model (channel counts), the same layers and the same --only, --center, --dct-window and --all-pairs; --align-rank and --outlier-factor are taken from the first state. The result equals one analysis of all the states' tokens (docs/statistics.md).")

    @Argument(help: ArgumentHelp("State files (HDF5, from analyze --save-state or merge --save-state).", valueName: "state"))
    var states: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp("Output directory.", valueName: "dir"))
    var output: String

    @Option(help: ArgumentHelp("Also save the merged accumulators, to merge further later.", valueName: "file"))
    var saveState: String?

    @Flag(help: "No messages on stderr.")
    var quiet = false

    func validate() throws {
        guard !states.isEmpty else { throw ValidationError("give at least one state file") }
    }

    func run() throws {
        try reportingErrors {
            var merged = try AnalysisStateFile.load(states[0])
            for path in states.dropFirst() {
                do {
                    try merged.merge(try AnalysisStateFile.load(path))
                } catch let error as DumpError where error.file == nil {
                    throw DumpError(error.category, error.message, file: path)
                }
            }
            if let saveState { try AnalysisStateFile.save(merged, to: saveState, version: KVStatVersion.current) }
            let report = try StatsFinisher.finish(merged, version: KVStatVersion.current)
            try AnalysisOutputs.write(report, to: output, quiet: quiet)
        }
    }
}
