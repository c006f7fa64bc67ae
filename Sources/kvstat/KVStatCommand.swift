// The `kvstat` command: subcommands over KV-cache dumps. Parsing and printing only; the work is in KVStat.
import ArgumentParser
import CProcessControl
import Foundation
import KVStat

@main
struct KVStatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvstat",
        abstract: "Statistics and low-rank fits for LLM key/value-cache dumps in HDF5.",
        discussion: "Exit codes: 0 success, 64 usage error, 65 bad input data, 66 input missing or unreadable, 73 output not writable, 70 internal error (docs/exit-codes.md).",
        version: KVStatVersion.current,
        subcommands: [InspectCommand.self, AnalyzeCommand.self, MergeCommand.self, FitLowrankCommand.self, EvalCommand.self,
                      ReportCommand.self, BatchCommand.self])

    static func main() {
        dieWithBatchParent()
        main(nil)
    }

    /// A batch child (KVSTAT_DIE_WITH_PARENT = the batch's pid) asks the kernel to kill it when the batch
    /// exits, so a batch killed with SIGKILL leaves no child writing into its folder; if the batch is
    /// already gone, the child stops at once.
    static func dieWithBatchParent() {
        guard let text = ProcessInfo.processInfo.environment["KVSTAT_DIE_WITH_PARENT"], let parent = Int32(text) else { return }
        _ = kv_set_parent_death_signal(SIGKILL)
        if getppid() != parent { Foundation.exit(70) }
    }
}
