// Checking `kvstat batch`'s pass-through arguments (`--analyze-arg`, `--fit`) before anything runs: they are
// parsed as the child command would parse them, so a bad option or value is a usage error at once (exit 64),
// and options that would change where or how the children write (-o, --save-state, --log-json, --quiet,
// --timings, --force) or name another input (a positional argument) are refused: the batch sets those itself.
import ArgumentParser

enum BatchPassThrough {
    /// Stands in for the dump the batch will give the child.
    static let placeholder = "BATCH-DUMP.h5"

    /// Checks `--analyze-arg` values.
    static func checkAnalyze(_ arguments: [String]) throws {
        let parsed: AnalyzeCommand
        do {
            parsed = try AnalyzeCommand.parse([placeholder] + arguments)
        } catch {
            throw ValidationError("--analyze-arg: \(AnalyzeCommand.message(for: error))")
        }
        let refused = [
            ("-o/--output", parsed.output != nil), ("--save-state", parsed.saveState != nil),
            ("--log-json", parsed.logJSON),
            ("--quiet", parsed.quiet), ("--timings", parsed.timings), ("--force", parsed.force),
        ]
        if let (name, _) = refused.first(where: \.1) { throw refusal("--analyze-arg", name) }
    }

    /// Checks the `--fit` arguments.
    static func checkFit(_ arguments: [String]) throws {
        let parsed: FitLowrankCommand
        do {
            parsed = try FitLowrankCommand.parse([placeholder] + arguments)
        } catch {
            throw ValidationError("--fit: \(FitLowrankCommand.message(for: error))")
        }
        let refused = [
            ("-o/--output", parsed.output != nil), ("--log-json", parsed.logJSON), ("--quiet", parsed.quiet),
            ("--force", parsed.force),
        ]
        if let (name, _) = refused.first(where: \.1) { throw refusal("--fit", name) }
    }

    static func refusal(_ option: String, _ name: String) -> ValidationError {
        ValidationError(
            "\(option): \(name) would change where or how the children write their outputs, "
                + "which the batch sets itself; leave it out")
    }
}
