// `kvstat batch INPUT... -o OUT`: analyze (and fit) every dump in child processes, resumable, with a SQLite
// ledger and corpus statistics merged from all finished dumps.
import ArgumentParser
import Foundation
import KVBatch

struct BatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract:
            "Analyze every dump of files, folders, globs or manifests into OUT/<content id>/, resumably, and merge "
            + "a corpus.",
        discussion: """
            A rerun skips finished dumps (by content: renamed files are not redone, changed files are). Each dump \
            runs in a child process; a lock stops two batches sharing OUT. Exit codes: 0 all done, 2 some failed \
            (listed at the end), 1 nothing could run. See docs/batch.md.
            """)

    @Argument(
        help: ArgumentHelp(
            "Dump files, folders (searched recursively for *.h5 and *.safetensors; a vLLM KV-connector folder of "
                + "per-layer files is one dump), globs, or manifest files (.txt/.list: one path per line).",
            valueName: "input"))
    var inputs: [String]

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp(
            "Output folder: OUT/<id>/ per dump, OUT/corpus/ (one OUT/corpus/<model>/ per model when there are "
                + "several, e.g. 32L-8kv-128d), OUT/ledger.sqlite.",
            valueName: "out"))
    var output: String

    @Option(help: "Dumps processed at once, 1…256; BLAS threads per dump = cores ÷ jobs.")
    var jobs = 1

    @Option(
        help: ArgumentHelp(
            "Process only shard i of n of the sorted inputs (Slurm array / Kubernetes indexed job).", valueName: "i/n"))
    var shard: String?

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "Also fit-lowrank each dump and the corpus with these arguments, quoted as one, e.g. --fit \"--method "
                + "pca --keep-ratio 0.25\" (\"\" for the defaults).",
            valueName: "args"))
    var fit: String?

    @Option(
        name: .customLong("analyze-arg"),
        help: ArgumentHelp(
            "An extra analyze argument (repeatable), e.g. --analyze-arg=--dct-window --analyze-arg=4096.",
            valueName: "arg"))
    var analyzeArguments: [String] = []

    @Flag(help: "One JSON object per event on stderr (start, running, done, failed, corpus, summary).")
    var logJSON = false

    @Flag(help: "Only the summary's exit code: no messages on stderr.")
    var quiet = false

    @Flag(help: "Use an OUT folder that holds files kvstat did not write (OUT itself is never read as input).")
    var force = false

    func validate() throws {
        try OptionBounds.check(jobs, "--jobs", in: 1...256)
        _ = try parsedShard()
        try BatchPassThrough.checkAnalyze(analyzeArguments)
        if let fit { try BatchPassThrough.checkFit(fitArguments(fit)) }
    }

    func parsedShard() throws -> (index: Int, count: Int)? {
        guard let shard else { return nil }
        let parts = shard.split(separator: "/").map { Int($0) }
        guard parts.count == 2, let i = parts[0], let n = parts[1], n > 0, i >= 0, i < n else {
            throw ValidationError(
                "--shard: use i/n with 0 ≤ i < n, e.g. 3/8 (Slurm: --shard "
                    + "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )
        }
        return (i, n)
    }

    /// `--fit "ARGS"` as the fit-lowrank arguments: split at white space.
    func fitArguments(_ text: String) -> [String] { text.split(whereSeparator: \.isWhitespace).map(String.init) }

    func run() throws {
        // Every batch, even without pass-through arguments: the children's command lines parse as the batch means.
        try BatchPassThrough.checkChildCommandLines(
            analyze: analyzeArguments, fit: fit.map(fitArguments),
            json: logJSON)
        var options = BatchOptions(
            inputs: inputs, output: output,
            executable: Bundle.main.executablePath ?? CommandLine.arguments[0])
        options.jobs = jobs
        options.shard = try parsedShard()
        options.analyzeArguments = analyzeArguments
        options.fitArguments = fit.map(fitArguments)
        options.logJSON = logJSON
        options.quiet = quiet
        options.force = force
        do {
            let summary = try BatchRunner(options).run()
            if summary.exitCode != 0 { throw ExitCode(summary.exitCode) }
        } catch let error as BatchError {
            throw failing(with: error.message, code: error.exitCode, json: logJSON, command: "kvstat batch")
        }
    }
}
