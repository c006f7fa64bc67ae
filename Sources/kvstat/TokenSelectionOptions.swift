// `--sequences` and `--tokens`, shared by analyze, fit-lowrank and eval: parsed and checked once (usage errors,
// exit 64), resolved against the dump once it is open (a sequence it lacks: exit 65), as one `TokenSelection`.
import ArgumentParser
import KVStat

struct TokenSelectionOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Sequences (batch rows) to read, e.g. 0-3 (default: all; each must exist).", valueName: "list"))
    var sequences: String?

    @Option(
        help: ArgumentHelp(
            "Token positions to read in every sequence, START:END (end exclusive; either may be omitted).",
            valueName: "range"))
    var tokens: String?

    func validate() throws {
        if let sequences { _ = try LayerList.parse(sequences, option: "--sequences") }
        if let tokens { _ = try TokenRangeOption.parse(tokens) }
    }

    /// The selection in `dump`'s numbers: every sequence named must exist (exit 65 otherwise).
    func resolve(in dump: Dump) throws -> TokenSelection {
        TokenSelection(
            sequences: try sequences.map {
                try LayerList.resolve(
                    $0, option: "--sequences", noun: "sequences", in: 0..<dump.shape.sequences, file: dump.path)
            },
            tokenRange: try tokens.map { try TokenRangeOption.parse($0) })
    }

    /// Whether either option was given.
    var isGiven: Bool { sequences != nil || tokens != nil }
}
