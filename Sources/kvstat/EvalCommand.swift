// `kvstat eval --artifact DIR DUMP`: apply saved projections to any dump of the same model and report the
// reconstruction error per layer, as fit-lowrank does for its own tokens.
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate the projections of a fit-lowrank artifact on a dump.",
        discussion:
            "Prints JSON (relative Frobenius error per layer and overall) on stdout; CSKV's window and quantization "
            + "are applied as fitted. --sequences/--tokens evaluate on part of the dump (recorded in the JSON), "
            + "whatever part the artifact was fitted on."
    )

    @Option(help: ArgumentHelp("Directory written by fit-lowrank (its projections.h5 is read).", valueName: "dir"))
    var artifact: String

    @OptionGroup var options: DumpOptions

    /// `--sequences`, `--tokens`: evaluate on those tokens only, selected as analyze selects them.
    @OptionGroup var selection: TokenSelectionOptions

    func run() throws {
        try reportingErrors {
            let (projections, manifest) = try FitArtifacts.load(artifact + "/projections.h5")
            let dump = try options.open()
            // The dump must be of the model the projections were fitted on (exit 65, naming both).
            try FitModel.check(projections, report: manifest, artifact: artifact + "/projections.h5", against: dump)
            var settings = ReconstructionSettings()
            settings.blockTokens = options.blockTokens
            if manifest.options.method == .cskv {
                settings.window = manifest.options.window
                settings.quantization = manifest.options.quantization
                settings.quantGroup = manifest.options.quantGroup
            }
            // A pre-RoPE key fit: its keys are also priced after the RoPE it recorded (`key`).
            settings.rope = manifest.rope?.embedding
            let selected = try selection.resolve(in: dump)
            let runs = try selected.runs(of: dump)
            // `--keep-sinks` artifacts: sink positions are a dump's own, so they are chosen on this one (attention
            // mass when it has attendable queries, else the first tokens, whatever rule the fit used) and kept exact;
            // a note on stderr says which rule and positions.
            if manifest.options.sinkCount > 0 {
                let sinks = try KeepSinks.choose(
                    dump, runs: runs, layers: manifest.layers, count: manifest.options.sinkCount,
                    options: manifest.options)
                settings.sinks = sinks
                let first = sinks.sequences.isEmpty ? "" : " (sequence \(sinks.sequences[0]): \(sinks.positions[0]))"
                FileHandle.standardError.write(
                    Data(
                        ("kvstat: note: \(dump.path): \(sinks.count) sink position(s) per sequence kept exact, "
                            + "chosen on this dump by \(sinks.rule.rawValue)\(first)\n").utf8))
            }
            let errors = try ReconstructionEvaluator.evaluate(
                dump, runs: runs, projections: projections,
                ranks: manifest.units.map(\.rank), settings: settings)
            let kinds = (settings.rope == nil ? [] : [.key]) + Set(projections.map(\.kind)).sorted()
            var result = LowRankFit.errors(errors, layers: manifest.layers, kinds: kinds, tokens: runs.totalTokens)
            if !selected.isWhole {
                let summary = selected.summary(of: dump, runs: runs)
                result.selection = summary.selection
                result.selectedSequences = summary.selectedSequences
                result.selectedTokens = summary.selectedTokens
            }
            try dump.checkUnchanged()  // exit 75, before anything is printed
            print(try JSONText.encode(result))
        }
    }
}
