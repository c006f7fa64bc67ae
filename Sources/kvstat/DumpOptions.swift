// Options shared by every subcommand that reads a dump.
import ArgumentParser
import Foundation
import KVStat

struct DumpOptions: ParsableArguments {
    @Argument(help: "The dump to read: an HDF5 file, a .safetensors file, or a folder of .safetensors files.")
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

    /// The dump's name for default output folders: a file's name without its extension (`run.h5` → `run`), a
    /// folder's whole name (`request.v1/` → `request.v1`).
    var stem: String {
        var isDirectory: ObjCBool = false
        let url = URL(fileURLWithPath: dump)
        let folder = FileManager.default.fileExists(atPath: dump, isDirectory: &isDirectory) && isDirectory.boolValue
        return folder ? url.lastPathComponent : url.deletingPathExtension().lastPathComponent
    }

    /// Opens and validates the dump.
    func open() throws(DumpError) -> Dump {
        let spec = try layout.map { path throws(DumpError) in try LayoutSpec.load(path) }
        return try Dump(path: dump, layout: spec)
    }
}
