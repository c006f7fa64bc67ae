// `kvstat inspect DUMP [--json] [--read-all]`: what a dump holds, without computing statistics.
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a dump's layout, shapes, element type, sizes, storage and provenance.")

    @OptionGroup var options: DumpOptions

    @Flag(help: "Print JSON (schema kvstat.inspect/1) instead of text.")
    var json = false

    @Flag(help: "Also stream every tensor once, counting values and NaN/Inf (memory stays one block).")
    var readAll = false

    func run() throws {
        try reportingErrors {
            let dump = try options.open()
            let summary = DumpSummary(dump)
            let scan = try readAll ? DumpScan(dump: dump, blockTokens: options.blockTokens) : nil
            try dump.checkUnchanged()  // exit 75, before anything is printed
            if json {
                print(try JSONText.encode(InspectJSON(summary: summary, scan: scan)))
            } else {
                print(InspectText.render(summary, scan: scan))
            }
        }
    }
}

/// `inspect --json` output: the summary, plus the scan's counts with `--read-all`.
struct InspectJSON: Encodable {
    var summary: DumpSummary
    var scan: DumpScan?

    func encode(to encoder: Encoder) throws {
        try summary.encode(to: encoder)
        if let scan {
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(scan, forKey: .scan)
        }
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        static let scan = Key(stringValue: "scan")
    }
}
