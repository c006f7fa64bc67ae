// `kvstat analyze DUMP [-o DIR]`: spectra, cross-layer similarity, outliers and frequency energy, streamed.
import ArgumentParser
import Foundation
import KVNumerics
import KVReport
import KVStat

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Compute spectra, cross-layer similarity, outliers and DCT energy of a dump (one streaming pass).",
        discussion:
            "Writes stats.json (schema kvstat.stats/2), layers.csv, spectra.csv, similarity.csv, channels.csv, "
            + "frequency.csv, sinks.csv, summary.md and report.html. Definitions: docs/statistics.md."
    )

    @OptionGroup var options: DumpOptions

    @Option(
        name: .shortAndLong, help: ArgumentHelp("Output directory (default: kvstat-out/<dump name>).", valueName: "dir")
    )
    var output: String?

    @Option(
        help: ArgumentHelp("Comma-separated sections: spectra, similarity, outliers, frequency.", valueName: "list"))
    var only: String?

    @Option(
        help: ArgumentHelp(
            "Layers to analyse, e.g. 0-7,12 (layer numbers as the file names them; each must exist).", valueName: "list"
        ))
    var layers: String?

    /// `--sequences`, `--tokens` (shared with fit-lowrank and eval).
    @OptionGroup var selection: TokenSelectionOptions

    @Option(help: ArgumentHelp("Also save the accumulators (HDF5) for `kvstat merge`.", valueName: "file"))
    var saveState: String?

    @Option(
        help: ArgumentHelp(
            "With --save-state: also save the Gram of each group of G ≥ 2 consecutive analysed layers (keys, values, "
                + "pre-RoPE keys), so that fit-lowrank STATE --method xkv --group-size G works (memory: per group "
                + "(G × channels)² × 4 bytes).",
            valueName: "G"))
    var xkvGroups: Int?

    @Flag(help: "Column-centre each layer's matrix before the SVD (spectra and subspace alignment).")
    var center = false

    @Option(help: "Rank r ≥ 1 of the subspace alignments (clipped to the channels).")
    var alignRank = 32

    @Option(
        help: "Outlier threshold F, a finite number > 0: channels (max |x|) and tokens (norm) above F × the median.")
    var outlierFactor = 6.0

    @Option(
        help: ArgumentHelp(
            "DCT window in tokens, ≥ 2, clipped to each sequence (default: each sequence whole).", valueName: "n"))
    var dctWindow: Int?

    @Option(
        help: ArgumentHelp(
            "Query positions per sequence, 0…1000000, sampled for the attention-mass sinks (dumps with queries; "
                + "positions ≥ 16 when the sequence has them; 0: none).",
            valueName: "n"))
    var sinkQueries = 64

    @Flag(
        inversion: .prefixedNo,
        help: "Causal mask for the attention-mass sinks (keys after a query are masked); --no-causal for encoders.")
    var causal = true

    @Flag(
        help:
            ArgumentHelp(
                "Cross-layer statistics for every layer pair, not only adjacent ones (memory: L²/2 × "
                    + "channels² × 8 "
                    + "bytes; a run that would not fit in memory is refused up front, exit 69).")
    )
    var allPairs = false

    @Option(help: "BLAS threads, 1…1024 (default: OpenBLAS's own choice, all cores).")
    var threads: Int?

    @Flag(
        help: """
            Skip the dump's SHA-256 (stats.json's dump.sha256 is then null): it reads the file once more, about \
            3 % of a full analysis. Without it, merge tells a dump merged twice only by its path.
            """)
    var noDigest = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Progress, completion and errors as one JSON object per line on stderr (for schedulers).")
    var logJSON = false

    @Flag(
        help:
            ArgumentHelp(
                "Print wall time per stage (read, gram, cross, outliers, sinks, dct, eigen, pairs) on stderr, "
                    + "with GFLOP/s for "
                    + "the BLAS stages.")
    )
    var timings = false

    @Flag(
        help: """
            Write into an -o folder holding files kvstat did not write, and replace a --save-state file that is not a \
            kvstat state file (never an input).
            """)
    var force = false

    func validate() throws {
        try OptionBounds.check(alignRank, "--align-rank", in: 1...Int.max)
        try OptionBounds.check(outlierFactor, "--outlier-factor", above: 0)
        try OptionBounds.check(sinkQueries, "--sink-queries", in: 0...1_000_000)
        if let dctWindow { try OptionBounds.check(dctWindow, "--dct-window", in: 2...Int.max) }
        if let threads { try OptionBounds.check(threads, "--threads", in: 1...1024) }
        if let xkvGroups { try OptionBounds.check(xkvGroups, "--xkv-groups", in: 2...XKVGrouping.maxGroupSize) }
        _ = try parsedSections()
        if let layers { _ = try LayerList.parse(layers) }
    }

    func parsedSections() throws -> Set<AnalysisSection> {
        guard let only else { return Set(AnalysisSection.allCases) }
        var result: Set<AnalysisSection> = []
        for word in only.split(separator: ",") {
            guard let section = AnalysisSection(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "--only: unknown section '\(word)'; choose from spectra, similarity, outliers, frequency")
            }
            result.insert(section)
        }
        return result
    }

    func run() throws {
        if let threads { BLAS.setThreads(threads) }
        try reportingErrors(json: logJSON) {
            // Checked here, not in validate(): batch parses its --analyze-arg list alone, without its --save-state.
            guard xkvGroups == nil || saveState != nil else {
                throw DumpError(
                    .usage, "--xkv-groups saves group Grams into the state file: give --save-state FILE with it")
            }
            let directory =
                output
                ?? "kvstat-out/" + options.stem
            let markFolder = try checkOutputs(directory)  // exit 73 before any work
            let dump = try options.open()
            var analysis = AnalysisOptions()
            analysis.sections = try parsedSections()
            analysis.layers = try layers.map {
                try LayerList.resolve($0, option: "--layers", noun: "layers", in: dump.layerNumbers, file: dump.path)
            }
            analysis.center = center
            analysis.alignRank = alignRank
            analysis.outlierFactor = outlierFactor
            analysis.dctWindow = dctWindow
            analysis.blockTokens = options.blockTokens
            analysis.pairs = allPairs ? .all : .adjacent
            analysis.xkvGroupSize = xkvGroups
            analysis.sinkQueries = sinkQueries
            analysis.causal = causal
            analysis.selection = try selection.resolve(in: dump)
            let progress = ProgressLine(quiet: quiet, json: logJSON)
            let clock = StageTimings()
            let state = try Analyzer.accumulate(
                dump, options: analysis, timings: clock, digest: !noDigest, progress: progress.update)
            progress.finish()
            try dump.checkUnchanged()  // exit 75, before anything is written
            if let saveState { try AnalysisStateFile.save(state, to: saveState, version: KVStatVersion.current) }
            let report = try StatsFinisher.finish(state, version: KVStatVersion.current, timings: clock)
            try AnalysisOutputs.write(
                report, to: directory, quiet: quiet || logJSON,
                marking: markFolder ? "analyze" : nil)
            progress.finish(output: directory)
            if timings {
                FileHandle.standardError.write(Data(clock.lines.map { "kvstat: timing \($0)\n" }.joined().utf8))
            }
        }
    }
}
