// `kvstat report DIR [--fit FIT_DIR]...`: re-render report.html from saved JSON (an analyze directory's
// stats.json, fit directories' manifest.json) without recomputing anything.
import ArgumentParser
import Foundation
import KVReport
import KVStat

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Re-render report.html from the JSON of an analyze run and, optionally, of fit-lowrank runs.")

    @Argument(
        help: ArgumentHelp(
            "An analyze output directory (holding stats.json) or a fit-lowrank one (manifest.json).", valueName: "dir"))
    var directory: String

    @Option(
        help: ArgumentHelp("A fit-lowrank output directory to add as the fits section (repeatable).", valueName: "dir"))
    var fit: [String] = []

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("Where to write the page (default: DIR/report.html).", valueName: "file"))
    var output: String?

    @Flag(help: "Replace an -o file that is not a kvstat report page (never an input).")
    var force = false

    func run() throws {
        try reportingErrors {
            try checkOutput()  // exit 73 before anything is read or written
            let statsPath = directory + "/stats.json"
            let stats: StatsReport? =
                FileManager.default.fileExists(atPath: statsPath) ? try decode(StatsReport.self, statsPath) : nil
            var fitDirectories = fit
            if stats == nil { fitDirectories.insert(directory, at: 0) }
            let fits = try fitDirectories.map { try decode(FitReport.self, $0 + "/manifest.json") }
            let target = output ?? directory + "/report.html"
            let url = URL(fileURLWithPath: target)
            try OutputDirectory.write(
                [url.lastPathComponent: ReportHTML.render(stats: stats, fits: fits)],
                to: url.deletingLastPathComponent().path)
            FileHandle.standardError.write(Data("kvstat: wrote \(target)\n".utf8))
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        let data = try InputFile.contents(
            path, what: "kvstat JSON output (run analyze or fit-lowrank first)", limit: 1 << 30)
        do {
            return try JSONText.decode(type, from: data)
        } catch {
            let expected =
                type == StatsReport.self ? "stats.json (\(StatsReport.schemaName))" : "manifest.json (kvstat.fit/1)"
            throw DumpError(
                .badData,
                "is not a kvstat \(expected): \(error)",
                file: path)
        }
    }
}
