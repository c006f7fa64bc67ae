// `kvstat fit-lowrank DUMP --method pca|xkv|matryoshka|cskv [budget] [-o DIR]`: fit low-rank projections of
// the channel dimension from streamed Grams, evaluate them in a second pass, write PyTorch-loadable artifacts.
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct FitLowrankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit-lowrank",
        abstract:
            "Fit low-rank projections (pca, xKV, MatryoshkaKV, CSKV styles) and evaluate their reconstruction error.",
        discussion:
            "Writes projections.safetensors, projections.h5, manifest.json (schema kvstat.fit/1), fit.csv and "
            + "report.html; with --sweep also sweep.csv. Give at most one budget: --rank, --keep-ratio, "
            + "--energy or --compression (default --keep-ratio 0.25). Definitions: docs/fit-lowrank.md."
    )

    @OptionGroup var options: DumpOptions

    @Option(help: "pca, xkv, matryoshka or cskv.")
    var method: String = "pca"

    @Option(
        help: ArgumentHelp(
            "pca: one projection per layer, head or group of N heads (layer, head, group:N).", valueName: "g"))
    var granularity: String = "layer"

    @Option(
        help:
            ArgumentHelp(
                "The same rank r ≥ 1 for every projection (xkv: per group of layers), clipped to each "
                    + "projection's "
                    + "dimension.")
    )
    var rank: Int?

    @Option(
        help:
            ArgumentHelp(
                "Stored floats per token ÷ original floats per token, in (0, 1] (projection matrices are a "
                    + "fixed cost, "
                    + "reported apart).")
    )
    var keepRatio: Double?

    @Option(help: "Per projection, the smallest rank reaching this fraction of the energy, in (0, 1].")
    var energy: Double?

    @Option(help: "1 / keep ratio: a finite number ≥ 1.")
    var compression: Double?

    @Flag(help: "Column-centre before fitting and store the mean.")
    var center = false

    @Option(
        help: ArgumentHelp(
            "xkv: adjacent layers per group, 1…65536 (memory: (group × channels)² × 8 bytes per Gram); from a "
                + "state file, the G it was analysed with (analyze --save-state FILE --xkv-groups G)."))
    var groupSize = 4

    @Option(help: "cskv: most recent tokens of each sequence kept in full precision (≥ 0).")
    var window = 128

    @Option(help: "cskv: quantize latents (none, int8, int4), group-wise asymmetric.")
    var quant: String = "none"

    @Option(help: "cskv: values per quantization group, 1…65536.")
    var quantGroup = 32

    @Option(help: "Hold out the last fraction h in [0, 1) of sequences (of tokens for one sequence) for evaluation.")
    var holdout = 0.0

    @Option(
        name: .customLong("eval"),
        help: ArgumentHelp("Also evaluate on another dump of the same model.", valueName: "dump"))
    var evalDump: String?

    @Option(
        help: ArgumentHelp(
            "Layers to fit, e.g. 0-7,12 (layer numbers as the file names them; each must exist).", valueName: "list"))
    var layers: String?

    /// `--sequences`, `--tokens`: fit (and hold out, and evaluate) on those tokens only, selected as analyze does.
    @OptionGroup var selection: TokenSelectionOptions

    @Option(
        help:
            "Query positions per sequence sampled for attention-level errors, 0…1000000 (dumps with queries; 0: none).")
    var attentionQueries = 64

    @Flag(inversion: .prefixedNo, help: "Causal mask for attention-level errors (keys after a query are masked).")
    var causal = true

    @Option(
        help: ArgumentHelp(
            "Keep the K attention-sink positions of each sequence exact (by attention mass with queries, else the "
                + "first K tokens), priced in full; ≥ 0 (0: none).", valueName: "K"))
    var keepSinks = 0

    @Flag(help: "Every method over the ladder of keep ratios: the error-versus-memory curve (sweep.csv).")
    var sweep = false

    @Option(
        help: ArgumentHelp(
            "Keys to fit: post-rope (the dump's keys) or pre-rope (key_pre_rope, evaluated before and after RoPE).",
            valueName: "space"))
    var keys: String = "post-rope"

    @Option(help: "--keys pre-rope: the RoPE base θ, overriding the dump's rope_theta attribute (> 0).")
    var ropeTheta: Double?

    @Option(help: "--keys pre-rope: rotate-half (Hugging Face, NeoX) or interleaved (GPT-J, llama.cpp).")
    var ropeStyle: String?

    @Option(help: "--keys pre-rope: rotated channels per head, even, 2…head_dim (default head_dim).")
    var rotaryDim: Int?

    @Option(
        help: ArgumentHelp(
            "Keep ratios of the matryoshka ladder and of --sweep: 1…64 numbers in (0, 1].", valueName: "list"))
    var ladder: String = "0.125,0.25,0.375,0.5,0.75"

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("Output directory (default: kvstat-out/<dump name>-<method>).", valueName: "dir"))
    var output: String?

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Progress, completion and errors as one JSON object per line on stderr (for schedulers).")
    var logJSON = false

    @Flag(help: "Write into an -o folder holding files kvstat did not write (never over an input).")
    var force = false

    /// Upper bounds of options whose size has no natural limit (each far beyond any model).
    static let maxGroupSize = 65_536, maxQuantGroup = 65_536, maxLadderRungs = 64, maxAttentionQueries = 1_000_000

    func validate() throws {
        _ = try fitOptions()
    }

    /// The options as KVStat takes them, checked; `layers` is left nil (run() matches --layers against the dump).
    func fitOptions() throws -> FitOptions {
        var o = FitOptions()
        guard let m = FitMethod(rawValue: method) else {
            throw ValidationError("--method: choose pca, xkv, matryoshka or cskv (got '\(method)')")
        }
        o.method = m
        guard let g = Granularity(granularity) else {
            throw ValidationError("--granularity: choose layer, head or group:N (got '\(granularity)')")
        }
        o.granularity = g
        let budgets = [rank != nil, keepRatio != nil, energy != nil, compression != nil].filter { $0 }.count
        guard budgets <= 1 else {
            throw ValidationError("give at most one of --rank, --keep-ratio, --energy, --compression")
        }
        if let rank {
            try OptionBounds.check(rank, "--rank", in: 1...Int.max)
            o.budget = .rank(rank)
        } else if let keepRatio {
            try OptionBounds.check(keepRatio, "--keep-ratio", above: 0, upTo: 1)
            o.budget = .keepRatio(keepRatio)
        } else if let energy {
            try OptionBounds.check(energy, "--energy", above: 0, upTo: 1)
            o.budget = .energy(energy)
        } else if let compression {
            try OptionBounds.check(compression, "--compression", above: 1, orEqual: true)
            o.budget = .keepRatio(1 / compression)
        }
        o.center = center
        try OptionBounds.check(groupSize, "--group-size", in: 1...FitLowrankCommand.maxGroupSize)
        o.groupSize = groupSize
        try OptionBounds.check(window, "--window", in: 0...Int.max)
        o.window = window
        guard let q = LatentQuantization(rawValue: quant) else {
            throw ValidationError("--quant: choose none, int8 or int4 (got '\(quant)')")
        }
        o.quantization = q
        try OptionBounds.check(quantGroup, "--quant-group", in: 1...FitLowrankCommand.maxQuantGroup)
        o.quantGroup = quantGroup
        try OptionBounds.check(holdout, "--holdout", above: 0, orEqual: true, upTo: 1, orEqualUpper: false)
        o.holdout = holdout
        // Checked here; the numbers are matched against the dump's (or state's) layers once it is open, in run().
        if let layers { _ = try LayerList.parse(layers) }
        let rungs = ladder.split(separator: ",", omittingEmptySubsequences: false).map {
            Double($0.trimmingCharacters(in: .whitespaces))
        }
        // NaN fails both comparisons, so `$0 > 0 && $0 <= 1` refuses it; ±inf fails one of them.
        guard (1...FitLowrankCommand.maxLadderRungs).contains(rungs.count),
            rungs.allSatisfy({ $0.map { $0.isFinite && $0 > 0 && $0 <= 1 } ?? false })
        else {
            throw ValidationError(
                "--ladder: 1…\(FitLowrankCommand.maxLadderRungs) comma-separated keep ratios, each a finite number "
                    + "in (0, 1], e.g. 0.125,0.25,0.5 (got '\(ladder)')"
            )
        }
        o.ladder = rungs.map { $0! }
        try OptionBounds.check(attentionQueries, "--attention-queries", in: 0...FitLowrankCommand.maxAttentionQueries)
        o.attentionQueries = attentionQueries
        o.causal = causal
        o.blockTokens = options.blockTokens
        try OptionBounds.check(keepSinks, "--keep-sinks", in: 0...Int.max)
        o.keepSinks = keepSinks > 0 ? keepSinks : nil
        try ropeOptions(into: &o)
        return o
    }

    func run() throws {
        try reportingErrors(json: logJSON) {
            var fit = try fitOptions()
            let directory =
                output ?? "kvstat-out/"
                + options.stem + "-"
                + fit.method.rawValue
            let markFolder = try checkOutputs(directory)  // exit 73 before any work
            let progress = ProgressLine(quiet: quiet, json: logJSON)
            // A state file (a batch corpus, merge --save-state) is fitted from its Grams; anything else is a dump.
            let fromState = AnalysisStateFile.isStateFile(options.dump)
            let result: LowRankFitResult
            let model: FitModel
            var opened: [Dump] = []  // dumps read, checked unchanged before anything is written
            if fromState {
                guard !fit.preRopeKeys else {
                    throw DumpError(
                        .usage, "--keys pre-rope needs a dump (a fit from a state file compresses the keys as cached)",
                        file: options.dump)
                }
                guard fit.sinkCount == 0 else {
                    throw DumpError(
                        .usage,
                        "--keep-sinks needs a dump: a state file holds only sums of its tokens, not the sink rows",
                        file: options.dump)
                }
                guard !sweep, evalDump == nil else {
                    throw DumpError(.usage, "--sweep and --eval need a dump, not a state file", file: options.dump)
                }
                guard !selection.isGiven else {
                    throw DumpError(
                        .usage,
                        "--sequences and --tokens need a dump: a state file holds only sums of its tokens "
                            + "(analyze the part with --sequences/--tokens --save-state, then fit that state)",
                        file: options.dump)
                }
                let state = try AnalysisStateFile.load(options.dump)
                model = FitModel(state.combinedSummary)
                if let layers {
                    // A state is fitted on all its layers' Grams; naming fewer cannot be honoured.
                    let named = try LayerList.resolve(
                        layers, option: "--layers", noun: "layers", in: state.layers.sorted(), file: options.dump)
                    guard named.count == state.layers.count else {
                        throw DumpError(
                            .usage,
                            "--layers: a state file is fitted on all its layers (\(IndexList.text(state.layers))); "
                                + "fit a dump to choose layers",
                            file: options.dump)
                    }
                }
                result = try StateFit.run(
                    state, path: options.dump, options: fit,
                    version: KVStatVersion.current, command: CommandLine.arguments)
            } else {
                let other = try evalDump.map { path throws(DumpError) in try Dump(path: path) }
                let dump = try options.open()
                model = FitModel(dump)
                fit.layers = try layers.map {
                    try LayerList.resolve(
                        $0, option: "--layers", noun: "layers", in: dump.layerNumbers, file: dump.path)
                }
                fit.selection = try selection.resolve(in: dump)
                opened = [dump] + (other.map { [$0] } ?? [])
                result = try LowRankFit.run(
                    dump, options: fit, evalDump: other, version: KVStatVersion.current,
                    command: CommandLine.arguments, progress: progress.update)
            }
            var report = result.report
            report.model = model  // the model fitted on, for `kvstat eval` to check
            var files: [String: Data] = [:]
            if sweep {
                let dump = try options.open()
                opened.append(dump)
                // With --keys pre-rope, pca and xkv on the pre-RoPE keys too (pca_pre_rope, xkv_pre_rope).
                let rungs =
                    try LowRankSweep.run(dump, options: fit, sinks: result.report.keepSinks, progress: progress.update)
                    + PreRopeSweep.run(dump, options: fit, progress: progress.update)
                report.sweep = rungs
                files["sweep.csv"] = Data(FitCSV.sweep(rungs).utf8)
            }
            progress.finish()
            let finished = LowRankFitResult(projections: result.projections, report: report)
            files["projections.safetensors"] = try FitArtifacts.safetensors(finished)
            files["manifest.json"] = Data((try JSONText.encode(report) + "\n").utf8)
            files["fit.csv"] = Data(FitCSV.perLayer(report).utf8)
            files["report.html"] = Data(ReportHTML.render(stats: nil, fits: [report]).utf8)
            for dump in opened { try dump.checkUnchanged() }  // exit 75, before anything is written
            // The largest file first: a full disk then fails the run before any other output is replaced.
            try FitArtifacts.writeHDF5(finished, to: directory + "/projections.h5")
            try OutputDirectory.write(files, to: directory, marking: markFolder ? "fit-lowrank" : nil)
            progress.finish(output: directory)
            if !quiet && !logJSON {
                // An undefined error (zero energy) prints as "undefined", never as 0.
                func error(_ value: Double??) -> String {
                    (value ?? nil).map { String(format: "%.4f", $0) } ?? "undefined (zero energy)"
                }
                let held = report.heldOut.map { ", held-out error " + error($0.overall["all"]) } ?? ""
                let line =
                    String(
                        format: "kvstat: %@ at %.3f of the memory (%.1f×): fit error ", report.method,
                        report.memoryRatio,
                        report.compression) + error(report.fit.overall["all"]) + held
                    + " (\(report.split)); wrote \(directory)\n"
                // The manifest's notes (undefined layers, a window holding every token, …) are printed too: a
                // summary line alone could read as a clean result.
                let notes = report.notes.map { "kvstat: note: \($0)\n" }.joined()
                FileHandle.standardError.write(
                    Data((line + ropeLine(report) + sinkLine(report) + notes + nullLine(report.xkvNull ?? [])).utf8))
            }
        }
    }

    /// `--keys`, `--rope-theta`, `--rope-style`, `--rotary-dim`, checked (exit 64); the RoPE options need
    /// `--keys pre-rope`. A rotary dimension above the dump's head_dim is refused once the dump is open.
    func ropeOptions(into o: inout FitOptions) throws {
        guard let space = KeySpace(rawValue: keys) else {
            throw ValidationError("--keys: choose post-rope or pre-rope (got '\(keys)')")
        }
        o.keys = space == .preRope ? .preRope : nil
        guard space == .preRope || (ropeTheta == nil && ropeStyle == nil && rotaryDim == nil) else {
            throw ValidationError("--rope-theta, --rope-style and --rotary-dim apply to --keys pre-rope only")
        }
        if let ropeTheta {
            try OptionBounds.check(ropeTheta, "--rope-theta", above: 0)
            o.ropeTheta = ropeTheta
        }
        if let ropeStyle {
            guard let style = RotaryEmbedding.Style(text: ropeStyle) else {
                throw ValidationError("--rope-style: choose rotate-half or interleaved (got '\(ropeStyle)')")
            }
            o.ropeStyle = style
        }
        if let rotaryDim {
            guard rotaryDim >= 2, rotaryDim % 2 == 0, rotaryDim <= Dump.maxChannels else {
                throw ValidationError("--rotary-dim: an even number from 2 to head_dim (got \(rotaryDim))")
            }
            o.rotaryDim = rotaryDim
        }
    }

    /// The after-RoPE line of a pre-RoPE key fit: keys after RoPE (what attention sees) beside before.
    func ropeLine(_ report: FitReport) -> String {
        guard let rope = report.rope else { return "" }
        func error(_ value: Double??) -> String { (value ?? nil).map { String(format: "%.4f", $0) } ?? "undefined" }
        let errors = report.heldOut ?? report.fit
        return "kvstat: pre-RoPE keys (RoPE θ \(rope.theta), \(rope.style), rotary_dim \(rope.rotaryDim)): key error "
            + "after RoPE \(error(errors.overall["key"])), before RoPE \(error(errors.overall["key_pre_rope"])) ("
            + (report.heldOut == nil ? "fit" : "held-out") + " tokens; manifest.json rope)\n"
    }

    /// `--keep-sinks`: the rule, and the attention-output error (RMS over layers) with the sinks kept exact and
    /// without them, so the gain of keeping them is never shown without what it is measured against.
    func sinkLine(_ report: FitReport) -> String {
        guard let sinks = report.keepSinks else { return "" }
        func rms(_ e: AttentionErrors?) -> String {
            let values = (e?.outputs ?? []).compactMap { $0 }
            guard !values.isEmpty else { return "undefined" }
            return String(format: "%.4f", (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot())
        }
        let first =
            sinks.sequences.isEmpty ? "" : " (sequence \(sinks.sequences[0]): \(sinks.positions[0]))"
        var line = "kvstat: \(sinks.count) sink position(s) per sequence kept exact by \(sinks.rule.rawValue)\(first)"
        if report.attention != nil {
            line +=
                "; attention output error \(rms(report.attention)) with them, \(rms(report.attentionWithoutSinks)) "
                + "with the sink rows rebuilt by the same projections (fitted without them; manifest.json keep_sinks, "
                + "attention_without_sinks)"
        }
        return line + "\n"
    }

    /// xKV's shuffled-token control in one line per kind: the mean over groups of the real gain (null − grouped
    /// error) and the accounting gain (per-layer − null), so the summary never shows the gain without its control.
    func nullLine(_ controls: [ShuffledNull.Control]) -> String {
        var parts: [String] = []
        for kind in TensorKind.canonicalOrder(Set(controls.map(\.kind))) {
            let of = controls.filter { $0.kind == kind }
            let real = of.compactMap(\.realGain)
            let accounting = of.compactMap(\.accountingGain)
            guard !real.isEmpty, !accounting.isEmpty else { continue }
            let plural = TensorKind(rawValue: kind)?.plural ?? kind
            parts.append(
                String(
                    format: "%@ real gain %.4f, accounting gain %.4f", plural,
                    real.reduce(0, +) / Double(real.count), accounting.reduce(0, +) / Double(accounting.count)))
        }
        guard !parts.isEmpty else { return "" }
        return "kvstat: xkv against its shuffled-token null (mean over groups): " + parts.joined(separator: "; ")
            + " (real = null − grouped error, accounting = per-layer − null; manifest.json xkv_null)\n"
    }
}
