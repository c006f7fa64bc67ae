// Checking `kvstat batch`'s pass-through arguments (`--analyze-arg`, `--fit`) before anything runs: they are
// parsed as the child command would parse them, so a bad option or value is a usage error at once (exit 64),
// and options that would change where or how the children write (-o, --save-state, --log-json, --quiet,
// --timings, --force) or name another input (a positional argument) are refused: the batch sets those itself.
//
// Then, as the batch starts, the whole child command line it will run — built by KVBatch's typed
// AnalyzeArguments / FitLowrankArguments — is parsed with this CLI's own AnalyzeCommand / FitLowrankCommand and
// must give back every value the batch set (dump, output, state file, quiet, threads). The batch's option
// spellings and the CLI's option names therefore cannot drift apart: a mismatch stops every batch at once
// (exit 70, a bug), before anything is written.
import ArgumentParser
import KVBatch

enum BatchPassThrough {
    /// Stands in for the dump the batch will give the child.
    static let placeholder = "BATCH-DUMP.h5"
    /// Stand in for the output folder and state file the batch will give the child.
    static let placeholderOutput = "BATCH-OUT/id.tmp-1", placeholderState = "BATCH-OUT/id.tmp-1/state.h5"

    /// Checks `--analyze-arg` values (in `validate()`).
    static func checkAnalyze(_ arguments: [String]) throws {
        try refuseTerminator(arguments, "--analyze-arg")
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

    /// Checks the `--fit` arguments (in `validate()`).
    static func checkFit(_ arguments: [String]) throws {
        try refuseTerminator(arguments, "--fit")
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

    /// Parses the child command lines the batch will build (with placeholders for the paths) with this CLI's
    /// own commands, and checks that they give back every value the batch set. Run first in `run()` (an
    /// internal error is reported there as one line, exit 70), before anything is written.
    static func checkChildCommandLines(
        analyze analyzeArguments: [String], fit fitArguments: [String]?, json: Bool
    )
        throws
    {
        let analyze = AnalyzeArguments(
            dump: placeholder, output: placeholderOutput, saveState: placeholderState,
            threads: 1, passThrough: analyzeArguments)
        var ownAnalyze = analyze
        ownAnalyze.passThrough = []
        let parsed = try childLine(
            ownAnalyze.commandLine, analyze.commandLine, option: "--analyze-arg",
            as: AnalyzeCommand.self, json: json)
        // A `--threads` among the user's arguments comes after the batch's, and wins.
        let userThreads = try AnalyzeCommand.parse([placeholder] + analyzeArguments).threads
        try expect(
            analyze.commandLine, json: json,
            [
                ("the dump", parsed.options.dump == analyze.dump), ("--output", parsed.output == analyze.output),
                ("--save-state", parsed.saveState == analyze.saveState), ("--quiet", parsed.quiet == analyze.quiet),
                ("--threads", parsed.threads == (userThreads ?? analyze.threads)),
            ])
        guard let fitArguments else { return }
        let fit = FitLowrankArguments(source: placeholder, output: placeholderOutput, passThrough: fitArguments)
        var ownFit = fit
        ownFit.passThrough = []
        let fitted = try childLine(
            ownFit.commandLine, fit.commandLine, option: "--fit", as: FitLowrankCommand.self,
            json: json)
        try expect(
            fit.commandLine, json: json,
            [
                ("the dump", fitted.options.dump == fit.source), ("--output", fitted.output == fit.output),
                ("--quiet", fitted.quiet == fit.quiet),
            ])
    }

    /// `commandLine` (subcommand first) parsed as `Command`. `own`, the same line without the pass-through
    /// arguments, must parse (else the batch's own spellings are wrong: exit 70); with them, a failure is the
    /// user's (exit 64).
    static func childLine<Command: ParsableCommand>(
        _ own: [String], _ commandLine: [String], option: String, as: Command.Type, json: Bool
    ) throws -> Command {
        guard own.first == Command._commandName, commandLine.first == Command._commandName else {
            throw contractBroken(commandLine, "it does not start with '\(Command._commandName)'", json: json)
        }
        do { _ = try Command.parse(Array(own.dropFirst())) } catch {
            throw contractBroken(own, Command.message(for: error), json: json)
        }
        do { return try Command.parse(Array(commandLine.dropFirst())) } catch {
            throw ValidationError("\(option): \(Command.message(for: error))")
        }
    }

    /// Every (what, parsed back as the batch set it) must hold.
    static func expect(_ commandLine: [String], json: Bool, _ checks: [(String, Bool)]) throws {
        if let (what, _) = checks.first(where: { !$0.1 }) {
            throw contractBroken(commandLine, "\(what) does not parse back as the batch set it", json: json)
        }
    }

    static func contractBroken(_ commandLine: [String], _ why: String, json: Bool) -> ExitCode {
        failing(
            with: "internal error: the batch's child command line \(commandLine) does not fit this kvstat: "
                + why, code: 70, json: json, command: "kvstat batch")
    }

    /// `--` would end the child's options before the dump, which the batch gives last.
    static func refuseTerminator(_ arguments: [String], _ option: String) throws {
        if arguments.contains("--") {
            throw ValidationError(
                "\(option): '--' would end the child's options before the dump the batch gives it; "
                    + "leave it out")
        }
    }

    static func refusal(_ option: String, _ name: String) -> ValidationError {
        ValidationError(
            "\(option): \(name) would change where or how the children write their outputs, "
                + "which the batch sets itself; leave it out")
    }
}
