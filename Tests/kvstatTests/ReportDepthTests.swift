// report.html at 6, 32 and 80 layers, rendered by headless Chromium: every chart's labels clear of each other
// and of the chart's edges, and no chart whose plotted area is mostly empty (Tests/Fixtures/check_report_layout.py
// measures the browser's own layout and reads the screenshot back). Issue 16: a report that reads at depth.
import Foundation
import Testing

@Suite struct ReportDepthTests {
    static func python(_ arguments: [String]) throws -> CLI.Result {
        try CLI.run(["/usr/bin/env", "python3"] + arguments, direct: true)
    }

    static let checker = CLI.repository.appendingPathComponent("Tests/Fixtures/check_report_layout.py").path

    /// A synthetic Llama-shaped dump of `layers` layers, small enough to analyse in well under a second.
    static func dump(layers: Int, at path: String) throws {
        let made = try python([
            CLI.repository.appendingPathComponent("Benchmarks/generate_llama_dump.py").path, "--tokens", "64",
            "--layers", "\(layers)", "--kv-heads", "2", "--head-dim", "16", "--key-rank", "8", "--value-rank", "12",
            "--outlier-channels", "2", "--out", path,
        ])
        try #require(made.status == 0, "generate_llama_dump.py: \(made.stderr)")
    }

    /// The similarity section of a report's HTML.
    static func similarity(_ html: String) -> Substring {
        guard let start = html.range(of: "<section id=\"similarity\">"),
            let end = html.range(of: "</section>", range: start.upperBound..<html.endIndex)
        else { return "" }
        return html[start.lowerBound..<end.upperBound]
    }

    static func count(_ needle: String, in text: Substring) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test(arguments: [(6, false), (32, true), (80, false)])
    func chartsReadAtDepth(layers: Int, allPairs: Bool) throws {
        let directory = FitCLITests.directory("depth\(layers)")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let input: String
        if layers == 6 {
            input = CLI.sample
        } else {
            input = directory + "/dump.h5"
            try Self.dump(layers: layers, at: input)
        }
        let analyze = try CLI.run(
            ["analyze", input, "-o", directory + "/stats", "--quiet"] + (allPairs ? ["--all-pairs"] : []))
        try #require(analyze.status == 0, "\(analyze.stderr)")
        let html = try String(contentsOfFile: directory + "/stats/report.html", encoding: .utf8)
        // Similarity against depth: one line chart per measure (CKA, cosine, subspace alignment), the adjacent
        // pairs' extremes as a table, and heatmaps only when every pair was computed (3 measures × 2 kinds here).
        let section = Self.similarity(html)
        #expect(Self.count("data-chart=\"line\"", in: section) == 3)
        #expect(section.contains("Adjacent layers: linear CKA") && section.contains("least similar pair"))
        #expect(Self.count("data-chart=\"heatmap\"", in: section) == (allPairs ? 6 : 0))
        // Per-layer series of deep dumps are coloured by depth with a colour bar, not one legend entry each.
        if layers > 14 { #expect(html.contains(">layer \(layers - 1)</text>")) }
        let check = try Self.python([Self.checker, directory + "/stats/report.html", directory + "/layout"])
        #expect(check.status == 0 && check.stdout.contains(" 0 problems"), "\(check.stdout)\(check.stderr)")
    }

    /// The checker fails on a page whose charts break its rules (overlapping labels, a diagonal band on a blank
    /// heatmap grid, data in a corner of a line chart).
    @Test func checkerRejectsUnreadableCharts() throws {
        let directory = FitCLITests.directory("depth-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bad = CLI.repository.appendingPathComponent("Tests/Fixtures/report-layout-bad.html").path
        let check = try Self.python([Self.checker, bad, directory])
        #expect(check.status == 1, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("labels '10000' and '20000' overlap"))
        #expect(check.stdout.contains("cells cover 10% of the grid"))
        #expect(check.stdout.contains("data span 10% of the plot width"))
    }
}
