// The files each command writes, and the checks run at the start of a command, before any work: no output
// may replace an input or a user's file (OutputGuard, docs/exit-codes.md: exit 73).
import Foundation
import KVStat

enum OutputNames {
    /// What `analyze` and `merge` write into their folder (AnalysisFiles).
    static let analysis = [
        "stats.json", "layers.csv", "spectra.csv", "similarity.csv", "channels.csv", "frequency.csv",
        "sinks.csv", "summary.md", "report.html",
    ]
    /// What `fit-lowrank` writes into its folder.
    static let fit = [
        "projections.safetensors", "projections.h5", "manifest.json", "fit.csv", "sweep.csv", "report.html",
    ]
}

extension OutputGuard {
    /// Checks `--save-state FILE` (not an input, not one of the files written into `folder`, and an existing
    /// file is replaced only if it is a kvstat state file, or with --force).
    func checkStateFile(_ path: String, besides folder: String, names: [String]) throws(DumpError) {
        let target = PathIdentity(path)
        if names.contains(where: { PathIdentity(folder + "/" + $0).isSameFile(as: target) }) {
            throw DumpError(
                .cannotWrite, "is also one of the files written into \(folder); choose another --save-state path",
                file: path)
        }
        try checkFile(path, kind: "a kvstat state file", option: "--save-state", isReplaceable: KVStatFiles.isStateFile)
    }
}

extension AnalyzeCommand {
    /// The output checks of `analyze` (the dump and --layout are inputs); returns whether to mark the folder.
    func checkOutputs(_ directory: String) throws(DumpError) -> Bool {
        var guarding = OutputGuard(force: force)
        guarding.addInput(options.dump, role: "the dump")
        if let layout = options.layout { guarding.addInput(layout, role: "the layout file") }
        let mark = try guarding.checkFolder(directory, names: OutputNames.analysis)
        if let saveState { try guarding.checkStateFile(saveState, besides: directory, names: OutputNames.analysis) }
        return mark
    }
}

extension MergeCommand {
    /// The output checks of `merge` (every state file is an input); returns whether to mark the folder.
    func checkOutputs() throws(DumpError) -> Bool {
        var guarding = OutputGuard(force: force)
        for state in try resolvedStates() { guarding.addInput(state, role: "a state file") }
        let mark = try guarding.checkFolder(output, names: OutputNames.analysis)
        if let saveState { try guarding.checkStateFile(saveState, besides: output, names: OutputNames.analysis) }
        return mark
    }
}

extension FitLowrankCommand {
    /// The output checks of `fit-lowrank` (the dump or state file, --eval and --layout are inputs); returns
    /// whether to mark the folder.
    func checkOutputs(_ directory: String) throws(DumpError) -> Bool {
        var guarding = OutputGuard(force: force)
        guarding.addInput(
            options.dump, role: AnalysisStateFile.isStateFile(options.dump) ? "the state file" : "the dump")
        if let evalDump { guarding.addInput(evalDump, role: "the --eval dump") }
        if let layout = options.layout { guarding.addInput(layout, role: "the layout file") }
        return try guarding.checkFolder(directory, names: OutputNames.fit)
    }
}

extension ReportCommand {
    /// The output check of `report`: the page replaces neither a JSON it reads nor a file that is not a kvstat
    /// report page (unless --force).
    func checkOutput() throws(DumpError) {
        var guarding = OutputGuard(force: force)
        for folder in [directory] + fit {
            for name in ["stats.json", "manifest.json"] { guarding.addInput(folder + "/" + name, role: "a \(name)") }
        }
        try guarding.checkFile(
            output ?? directory + "/report.html", kind: "a kvstat report page", option: "-o",
            isReplaceable: KVStatFiles.isReportPage)
    }
}
