// `kvstat decompress OUT.h5 -o DUMP.h5`: rebuild a dump in the canonical per-layer layout from a compressed cache.
import ArgumentParser
import Foundation
import KVStat

struct DecompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decompress",
        abstract: "Rebuild a dump (canonical layout, float16) from a kvstat compressed cache.",
        discussion:
            "Writes layer_{l}/{kind} ([sequences, tokens, heads, head_dim], axes bthd) and lengths; every kvstat "
            + "command reads the result."
    )

    @Argument(help: "The compressed cache (written by kvstat compress).")
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp("The dump to write (HDF5).", valueName: "file"))
    var output: String

    @Flag(help: "Replace an existing file at -o that kvstat decompress did not write (never an input).")
    var force = false

    func run() throws {
        try reportingErrors {
            var guarding = OutputGuard(force: force)
            guarding.addInput(input, role: "the compressed cache")
            try guarding.checkFile(
                output, kind: "a dump written by kvstat decompress", option: "-o",
                isReplaceable: Decompressor.isDecompressedDump)
            try Decompressor.decompress(input, to: output)
            FileHandle.standardError.write(Data("kvstat: wrote \(output)\n".utf8))
        }
    }
}
