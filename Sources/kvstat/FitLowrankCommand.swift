// `kvstat fit-lowrank DUMP --method pca|xkv|matryoshka|cskv [budget] [-o DIR]`: fit low-rank projections of
// the channel dimension from streamed Grams, evaluate them in a second pass, write PyTorch-loadable artifacts.
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct FitLowrankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-lowrank",
        abstract: "Fit low-rank projections (pca, xKV, MatryoshkaKV, CSKV styles) and evaluate their reconstruction error.",
        discussion: "Writes projections.safetensors, projections.h5, manifest.json (schema kvstat.fit/1), fit.csv and report.html; with --sweep also sweep.csv. Give at most one budget: --rank, --keep-ratio, --energy or --compression (default --keep-ratio 0.25). Definitions: docs/fit-lowrank.md.")

    @OptionGroup var options: DumpOptions

    @Option(help: "pca, xkv, matryoshka or cskv.")
    var method: String = "pca"

    @Option(help: ArgumentHelp("pca: one projection per layer, head or group of N heads (layer, head, group:N).", valueName: "g"))
    var granularity: String = "layer"

    @Option(help: "The same rank for every projection (xkv: per group of layers).")
    var rank: Int?

    @Option(help: "Stored floats per token ÷ original floats per token (projection matrices are a fixed cost, reported apart).")
    var keepRatio: Double?

    @Option(help: "Per projection, the smallest rank reaching this fraction of the energy.")
    var energy: Double?

    @Option(help: "1 / keep ratio.")
    var compression: Double?

    @Flag(help: "Column-centre before fitting and store the mean.")
    var center = false

    @Option(help: "xkv: adjacent layers per group.")
    var groupSize = 4

    @Option(help: "cskv: most recent tokens of each sequence kept in full precision.")
    var window = 128

    @Option(help: "cskv: quantize latents (none, int8, int4), group-wise asymmetric.")
    var quant: String = "none"

    @Option(help: "cskv: values per quantization group.")
    var quantGroup = 32

    @Option(help: "Hold out the last fraction h of sequences (of tokens for one sequence) for evaluation.")
    var holdout = 0.0

    @Option(name: .customLong("eval"), help: ArgumentHelp("Also evaluate on another dump of the same model.", valueName: "dump"))
    var evalDump: String?

    @Option(help: ArgumentHelp("Layers to fit, e.g. 0-7,12.", valueName: "list"))
    var layers: String?

    @Option(help: "Query positions per sequence sampled for attention-level errors (dumps with queries; 0: none).")
    var attentionQueries = 64

    @Flag(inversion: .prefixedNo, help: "Causal mask for attention-level errors (keys after a query are masked).")
    var causal = true

    @Flag(help: "Every method over the ladder of keep ratios: the error-versus-memory curve (sweep.csv).")
    var sweep = false

    @Option(help: ArgumentHelp("Keep ratios of the matryoshka ladder and of --sweep.", valueName: "list"))
    var ladder: String = "0.125,0.25,0.375,0.5,0.75"

    @Option(name: .shortAndLong, help: ArgumentHelp("Output directory (default: kvstat-out/<dump name>-<method>).", valueName: "dir"))
    var output: String?

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Progress, completion and errors as one JSON object per line on stderr (for schedulers).")
    var logJSON = false

    func validate() throws {
        _ = try fitOptions()
    }

    /// The options as KVStat takes them, checked.
    func fitOptions() throws -> FitOptions {
        var o = FitOptions()
        guard let m = FitMethod(rawValue: method) else { throw ValidationError("--method: choose pca, xkv, matryoshka or cskv (got '\(method)')") }
        o.method = m
        guard let g = Granularity(granularity) else { throw ValidationError("--granularity: choose layer, head or group:N (got '\(granularity)')") }
        o.granularity = g
        let budgets = [rank != nil, keepRatio != nil, energy != nil, compression != nil].filter { $0 }.count
        guard budgets <= 1 else { throw ValidationError("give at most one of --rank, --keep-ratio, --energy, --compression") }
        if let rank {
            guard rank > 0 else { throw ValidationError("--rank must be positive") }
            o.budget = .rank(rank)
        } else if let keepRatio {
            guard keepRatio > 0 && keepRatio <= 1 else { throw ValidationError("--keep-ratio must be in (0, 1]") }
            o.budget = .keepRatio(keepRatio)
        } else if let energy {
            guard energy > 0 && energy <= 1 else { throw ValidationError("--energy must be in (0, 1]") }
            o.budget = .energy(energy)
        } else if let compression {
            guard compression >= 1 else { throw ValidationError("--compression must be at least 1") }
            o.budget = .keepRatio(1 / compression)
        }
        o.center = center
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
        o.groupSize = groupSize
        guard window >= 0 else { throw ValidationError("--window must not be negative") }
        o.window = window
        guard let q = LatentQuantization(rawValue: quant) else { throw ValidationError("--quant: choose none, int8 or int4 (got '\(quant)')") }
        o.quantization = q
        guard quantGroup > 0 else { throw ValidationError("--quant-group must be positive") }
        o.quantGroup = quantGroup
        guard holdout >= 0 && holdout < 1 else { throw ValidationError("--holdout must be in [0, 1)") }
        o.holdout = holdout
        o.layers = try layers.map { try LayerList.parse($0) }
        let rungs = ladder.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !rungs.isEmpty, rungs.allSatisfy({ $0 != nil && $0! > 0 && $0! <= 1 }) else {
            throw ValidationError("--ladder: comma-separated keep ratios in (0, 1], e.g. 0.125,0.25,0.5")
        }
        o.ladder = rungs.map { $0! }
        guard attentionQueries >= 0 else { throw ValidationError("--attention-queries must not be negative") }
        o.attentionQueries = attentionQueries
        o.causal = causal
        o.blockTokens = options.blockTokens
        return o
    }

    func run() throws {
        try reportingErrors(json: logJSON) {
            let fit = try fitOptions()
            let progress = ProgressLine(quiet: quiet, json: logJSON)
            // A state file (a batch corpus, merge --save-state) is fitted from its Grams; anything else is a dump.
            let fromState = AnalysisStateFile.isStateFile(options.dump)
            let result: LowRankFitResult
            if fromState {
                guard !sweep, evalDump == nil else {
                    throw DumpError(.badData, "--sweep and --eval need a dump, not a state file", file: options.dump)
                }
                result = try StateFit.run(try AnalysisStateFile.load(options.dump), path: options.dump, options: fit,
                                          version: KVStatVersion.current, command: CommandLine.arguments)
            } else {
                let other = try evalDump.map { path throws(DumpError) in try Dump(path: path) }
                result = try LowRankFit.run(try options.open(), options: fit, evalDump: other, version: KVStatVersion.current,
                                            command: CommandLine.arguments, progress: progress.update)
            }
            var report = result.report
            var files: [String: Data] = [:]
            if sweep {
                let rungs = try LowRankSweep.run(try options.open(), options: fit, progress: progress.update)
                report.sweep = rungs
                files["sweep.csv"] = Data(FitCSV.sweep(rungs).utf8)
            }
            progress.finish()
            let directory = output ?? "kvstat-out/" + URL(fileURLWithPath: options.dump).deletingPathExtension().lastPathComponent + "-" + fit.method.rawValue
            let finished = LowRankFitResult(projections: result.projections, report: report)
            files["projections.safetensors"] = try FitArtifacts.safetensors(finished)
            files["manifest.json"] = Data((try JSONText.encode(report) + "\n").utf8)
            files["fit.csv"] = Data(FitCSV.perLayer(report).utf8)
            files["report.html"] = Data(ReportHTML.render(stats: nil, fits: [report]).utf8)
            try OutputDirectory.write(files, to: directory)
            try FitArtifacts.writeHDF5(finished, to: directory + "/projections.h5")
            progress.finish(output: directory)
            if !quiet && !logJSON {
                let held = report.heldOut.map { String(format: ", held-out error %.4f", $0.overall["all"] ?? 0) } ?? ""
                FileHandle.standardError.write(Data(String(format: "kvstat: %@ at %.3f of the memory (%.1f×): fit error %.4f%@; wrote %@\n",
                                                           report.method, report.memoryRatio, report.compression, report.fit.overall["all"] ?? 0, held, directory).utf8))
            }
        }
    }
}
