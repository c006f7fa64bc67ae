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

    func validate() throws {
        guard alignRank > 0 else { throw ValidationError("--align-rank must be positive") }
        guard outlierFactor > 0 else { throw ValidationError("--outlier-factor must be positive") }
        if let dctWindow, dctWindow < 2 { throw ValidationError("--dct-window must be at least 2") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        _ = try parsedSections()
        if let layers { _ = try LayerList.parse(layers) }
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
        try reportingErrors {
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
            let progress = ProgressLine(enabled: !quiet)
            let state = try Analyzer.accumulate(dump, options: analysis, progress: progress.update)
            progress.finish()
            let report = try StatsFinisher.finish(state, version: KVStatVersion.current)
            let directory = output ?? "kvstat-out/" + URL(fileURLWithPath: dump.path).deletingPathExtension().lastPathComponent
            var files = StatsCSV.tables(report)
            files["stats.json"] = try JSONText.encode(report) + "\n"
            files["summary.md"] = SummaryMarkdown.render(report)
            try OutputDirectory.write(files, to: directory)
            if !quiet { FileHandle.standardError.write(Data("kvstat: wrote \(directory)/stats.json, summary.md and 5 CSV files\n".utf8)) }
        }
    }
}

/// Parses `0-7,12` into sorted unique layer numbers.
enum LayerList {
    static func parse(_ text: String) throws -> [Int] {
        var layers: Set<Int> = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1 where bounds[0] != nil: layers.insert(bounds[0]!)
            case 2 where bounds[0] != nil && bounds[1] != nil && bounds[0]! <= bounds[1]!: layers.formUnion(bounds[0]!...bounds[1]!)
            default: throw ValidationError("--layers: cannot read '\(part)'; use e.g. 0-7,12")
            }
        }
        return layers.sorted()
    }
}
