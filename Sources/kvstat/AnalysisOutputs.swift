// Writing what `analyze` and `merge` produce from a finished report: stats.json, the CSVs, summary.md and
// report.html.
import Foundation
import KVReport
import KVStat

enum AnalysisOutputs {
    /// Writes every output file of `report` into `directory`, each atomically.
    /// Marks the folder as written by `command` when given (see OutputGuard.checkFolder).
    static func write(_ report: StatsReport, to directory: String, quiet: Bool, marking command: String?) throws {
        let files = try AnalysisFiles.render(report)
        try OutputDirectory.write(files, to: directory, marking: command)
        if !quiet {
            FileHandle.standardError.write(
                Data(
                    "kvstat: wrote \(directory)/stats.json, report.html, summary.md and \(files.count - 3) CSV files\n"
                        .utf8))
        }
    }
}
