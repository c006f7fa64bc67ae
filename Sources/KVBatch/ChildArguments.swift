// The command lines of a batch's children, typed: every value the batch sets (dump, output folder, state file,
// threads, quiet) is a field, written with the option spellings below, and the user's pass-through arguments
// (`--analyze-arg`, `--fit`) follow them. The kvstat CLI parses every command line built here with its own
// AnalyzeCommand / FitLowrankCommand before a batch starts (BatchPassThrough), and KVBatchTests checks each
// spelling against the built binary's --help, so a renamed CLI option cannot silently break the children.
//
// Values are joined to their option (`--output=DIR`) and the dump comes last after `--`, so that no path, even
// one starting with `-`, is read as an option.

/// A child's command line: the subcommand's name, then its arguments, as given to the kvstat executable.
public protocol ChildCommandLine: Sendable {
    var commandLine: [String] { get }
}

/// `kvstat analyze --output=DIR --save-state=FILE [--quiet] [--threads=T] PASS-THROUGH… -- DUMP`.
public struct AnalyzeArguments: ChildCommandLine, Equatable {
    public static let subcommand = "analyze"

    /// The long names of the analyze options the batch sets.
    public enum Option {
        public static let output = "--output", saveState = "--save-state", quiet = "--quiet", threads = "--threads"
        public static let all = [output, saveState, quiet, threads]
    }

    public var dump: String
    public var output: String
    public var saveState: String
    /// BLAS threads; nil leaves OpenBLAS's own choice.
    public var threads: Int?
    public var quiet = true
    /// The user's extra analyze arguments (BatchOptions.analyzeArguments), after the batch's own.
    public var passThrough: [String] = []

    public init(dump: String, output: String, saveState: String, threads: Int?, passThrough: [String]) {
        (self.dump, self.output, self.saveState, self.threads, self.passThrough) = (
            dump, output, saveState, threads, passThrough
        )
    }

    public var commandLine: [String] {
        var line = [Self.subcommand, Option.output + "=" + output, Option.saveState + "=" + saveState]
        if quiet { line.append(Option.quiet) }
        if let threads { line.append(Option.threads + "=" + String(threads)) }
        return line + passThrough + ["--", dump]
    }
}

/// `kvstat fit-lowrank --output=DIR [--quiet] PASS-THROUGH… -- SOURCE`, SOURCE a dump or a state file (the corpus).
public struct FitLowrankArguments: ChildCommandLine, Equatable {
    public static let subcommand = "fit-lowrank"

    /// The long names of the fit-lowrank options the batch sets.
    public enum Option {
        public static let output = "--output", quiet = "--quiet"
        public static let all = [output, quiet]
    }

    public var source: String
    public var output: String
    public var quiet = true
    /// The user's `--fit` arguments, after the batch's own.
    public var passThrough: [String] = []

    public init(source: String, output: String, passThrough: [String]) {
        (self.source, self.output, self.passThrough) = (source, output, passThrough)
    }

    public var commandLine: [String] {
        var line = [Self.subcommand, Option.output + "=" + output]
        if quiet { line.append(Option.quiet) }
        return line + passThrough + ["--", source]
    }
}
