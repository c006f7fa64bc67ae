// The `kvstat` command: subcommands over KV-cache dumps. Parsing and printing only; the work is in KVStat.
import ArgumentParser

@main
struct KVStatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvstat",
        abstract: "Statistics and low-rank fits for LLM key/value-cache dumps in HDF5.",
        discussion: "Exit codes: 0 success, 64 usage error, 65 bad input data, 66 input missing or unreadable, 73 output not writable, 70 internal error (docs/exit-codes.md).",
        version: KVStatVersion.current,
        subcommands: [InspectCommand.self, AnalyzeCommand.self, MergeCommand.self, FitLowrankCommand.self, EvalCommand.self, ReportCommand.self])
}

enum KVStatVersion {
    static let current = "0.1.0"
}
