// `kvstat analyze DUMP [-o DIR]`: spectra, cross-layer similarity, outliers and frequency energy, streamed.
import ArgumentParser
import Foundation
import KVReport
import KVStat
import KVNumerics

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Compute spectra, cross-layer similarity, outliers and DCT energy of a dump (one streaming pass).",
        discussion: "Writes stats.json (schema kvstat.stats/1), layers.csv, spectra.csv, similarity.csv, channels.csv, frequency.csv and summary.md. Definitions: docs/statistics.md.")

    @OptionGroup var options: DumpOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("Output directory (default: kvstat-out/<dump name>).", valueName: "dir"))
    var output: String?

    @Option(help: ArgumentHelp("Comma-separated sections: spectra, similarity, outliers, frequency.", valueName: "list"))
    var only: String?

    @Option(help: ArgumentHelp("Layers to analyse, e.g. 0-7,12.", valueName: "list"))
    var layers: String?

    @Option(help: ArgumentHelp("Sequences (batch rows) to analyse, e.g. 0-3 (default: all).", valueName: "list"))
    var sequences: String?

    @Option(help: ArgumentHelp("Token positions to analyse in every sequence, START:END (end exclusive; either may be omitted).", valueName: "range"))
    var tokens: String?

    @Option(help: ArgumentHelp("Also save the accumulators (HDF5) for `kvstat merge`.", valueName: "file"))
    var saveState: String?

    @Flag(help: "Column-centre each layer's matrix before the SVD (spectra and subspace alignment).")
    var center = false

    @Option(help: "Rank r of the subspace alignments.")
    var alignRank = 32

    @Option(help: "Outlier threshold: channels (max |x|) and tokens (norm) above F × the median.")
    var outlierFactor = 6.0

    @Option(help: ArgumentHelp("DCT window in tokens (default: each sequence whole).", valueName: "n"))
    var dctWindow: Int?

    @Flag(help: "Cross-layer statistics for every layer pair, not only adjacent ones (memory: L²/2 × channels² × 8 bytes).")
    var allPairs = false

    @Option(help: "BLAS threads (default: OpenBLAS's own choice, all cores).")
    var threads: Int?

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Progress, completion and errors as one JSON object per line on stderr (for schedulers).")
    var logJSON = false

    @Flag(help: "Print wall time per stage (read, gram, cross, outliers, dct, eigen, pairs) on stderr, with GFLOP/s for the BLAS stages.")
    var timings = false

    func validate() throws {
        guard alignRank > 0 else { throw ValidationError("--align-rank must be positive") }
        guard outlierFactor > 0 else { throw ValidationError("--outlier-factor must be positive") }
        if let dctWindow, dctWindow < 2 { throw ValidationError("--dct-window must be at least 2") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        _ = try parsedSections()
        if let layers { _ = try LayerList.parse(layers) }
        if let sequences { _ = try LayerList.parse(sequences, option: "--sequences") }
        if let tokens { _ = try TokenRangeOption.parse(tokens) }
    }

    func parsedSections() throws -> Set<AnalysisSection> {
        guard let only else { return Set(AnalysisSection.allCases) }
        var result: Set<AnalysisSection> = []
        for word in only.split(separator: ",") {
            guard let section = AnalysisSection(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--only: unknown section '\(word)'; choose from spectra, similarity, outliers, frequency")
            }
            result.insert(section)
        }
        return result
    }

    func run() throws {
        if let threads { BLAS.setThreads(threads) }
        try reportingErrors(json: logJSON) {
            let dump = try options.open()
            var analysis = AnalysisOptions()
            analysis.sections = try parsedSections()
            analysis.layers = try layers.map { try LayerList.parse($0) }
            analysis.center = center
            analysis.alignRank = alignRank
            analysis.outlierFactor = outlierFactor
            analysis.dctWindow = dctWindow
            analysis.blockTokens = options.blockTokens
            analysis.pairs = allPairs ? .all : .adjacent
            let directory = output ?? "kvstat-out/" + URL(fileURLWithPath: dump.path).deletingPathExtension().lastPathComponent
            analysis.sequences = try sequences.map { try LayerList.parse($0, option: "--sequences") }
            analysis.tokenRange = try tokens.map { try TokenRangeOption.parse($0) }
            let progress = ProgressLine(quiet: quiet, json: logJSON)
            let clock = StageTimings()
            let state = try Analyzer.accumulate(dump, options: analysis, timings: clock, progress: progress.update)
            progress.finish()
            if let saveState { try AnalysisStateFile.save(state, to: saveState, version: KVStatVersion.current) }
            let report = try StatsFinisher.finish(state, version: KVStatVersion.current, timings: clock)
            try AnalysisOutputs.write(report, to: directory, quiet: quiet || logJSON)
            progress.finish(output: directory)
            if timings { FileHandle.standardError.write(Data(clock.lines.map { "kvstat: timing \($0)\n" }.joined().utf8)) }
        }
    }
}

/// Parses `--layers` / `--sequences` values (`0-7,12`) for the command line.
enum LayerList {
    static func parse(_ text: String, option: String = "--layers") throws -> [Int] {
        guard let numbers = IndexList.parse(text) else {
            throw ValidationError("\(option): cannot read '\(text)'; use e.g. 0-7,12")
        }
        return numbers
    }
}

/// Parses `--tokens START:END`.
enum TokenRangeOption {
    static func parse(_ text: String) throws -> Range<Int> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let lower = parts.count == 2 ? (parts[0].isEmpty ? 0 : Int(parts[0])) : nil
        let upper = parts.count == 2 ? (parts[1].isEmpty ? Int.max : Int(parts[1])) : nil
        guard let lower, let upper, lower >= 0, lower < upper else {
            throw ValidationError("--tokens: cannot read '\(text)'; use START:END with START < END, e.g. 0:4096 or 4096:")
        }
        return lower..<upper
    }
}
