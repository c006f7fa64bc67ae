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
            + "are applied as fitted."
    )

    @Option(help: ArgumentHelp("Directory written by fit-lowrank (its projections.h5 is read).", valueName: "dir"))
    var artifact: String

    @OptionGroup var options: DumpOptions

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
            let errors = try ReconstructionEvaluator.evaluate(
                dump, runs: dump.tokenRuns, projections: projections,
                ranks: manifest.units.map(\.rank), settings: settings)
            let kinds = Set(projections.map(\.kind)).sorted()
            let result = LowRankFit.errors(errors, layers: manifest.layers, kinds: kinds, tokens: dump.shape.tokens)
            try dump.checkUnchanged()  // exit 75, before anything is printed
            print(try JSONText.encode(result))
        }
    }
}
