// Options shared by every subcommand that reads a dump.
import ArgumentParser
import KVStat

struct DumpOptions: ParsableArguments {
    @Argument(help: "The HDF5 dump to read.")
    var dump: String

    @Option(
        name: .long,
        help: ArgumentHelp("Layout description (JSON or YAML) for dumps kvstat does not detect.", valueName: "file"))
    var layout: String?

    @Option(
        name: .long,
        help:
            ArgumentHelp(
                "Token rows per streamed block, ≥ 1; larger values are clipped to the valid tokens read "
                    + "(memory is one "
                    + "block per tensor being read, checked against the machine's before reading).")
    )
    var blockTokens: Int = TokenBlockReader.defaultBlockTokens

    func validate() throws {
        try OptionBounds.check(blockTokens, "--block-tokens", in: 1...Int.max)
    }

    /// Opens and validates the dump.
    func open() throws(DumpError) -> Dump {
        let spec = try layout.map { path throws(DumpError) in try LayoutSpec.load(path) }
        return try Dump(path: dump, layout: spec)
    }
}
