// Writing what `analyze` and `merge` produce from a finished report: stats.json, the CSVs and summary.md.
import Foundation
import KVReport
import KVStat

enum AnalysisOutputs {
    /// Writes every output file of `report` into `directory`, each atomically.
    static func write(_ report: StatsReport, to directory: String, quiet: Bool) throws {
        var files = StatsCSV.tables(report)
        files["stats.json"] = try JSONText.encode(report) + "\n"
        files["summary.md"] = SummaryMarkdown.render(report)
        try OutputDirectory.write(files, to: directory)
        if !quiet {
            FileHandle.standardError.write(Data("kvstat: wrote \(directory)/stats.json, summary.md and \(files.count - 2) CSV files\n".utf8))
        }
    }
}
