// Every file an analysis writes, rendered from its report: stats.json, the tidy CSVs, summary.md and
// report.html (used by analyze, merge and the batch corpus).
import KVStat

public enum AnalysisFiles {
    /// File name → contents.
    public static func render(_ report: StatsReport) throws -> [String: String] {
        var files = StatsCSV.tables(report)
        files["stats.json"] = try JSONText.encode(report) + "\n"
        files["summary.md"] = SummaryMarkdown.render(report)
        files["report.html"] = ReportHTML.render(stats: report)
        return files
    }
}
