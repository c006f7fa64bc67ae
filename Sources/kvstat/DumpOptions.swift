// Options shared by every subcommand that reads a dump.
import ArgumentParser
import KVStat

struct DumpOptions: ParsableArguments {
    @Argument(help: "The HDF5 dump to read.")
    var dump: String

    @Option(name: .long, help: ArgumentHelp("Layout description (JSON or YAML) for dumps kvstat does not detect.", valueName: "file"))
    var layout: String?

    @Option(name: .long, help: "Token rows per streamed block (memory is one block per tensor being read).")
    var blockTokens: Int = TokenBlockReader.defaultBlockTokens

    func validate() throws {
        guard blockTokens > 0 else { throw ValidationError("--block-tokens must be positive") }
    }

    /// Opens and validates the dump.
    func open() throws(DumpError) -> Dump {
        let spec = try layout.map { path throws(DumpError) in try LayoutSpec.load(path) }
        return try Dump(path: dump, layout: spec)
    }
}
