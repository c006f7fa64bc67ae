// The text rendering of `kvstat inspect`.
import Foundation
import KVReport
import KVStat
import Testing

@Suite struct InspectTextTests {
    @Test func byteCounts() {
        #expect(ByteCount.format(512) == "512 B")
        #expect(ByteCount.format(1536) == "1.5 KiB")
        #expect(ByteCount.format(4 << 30) == "4.0 GiB")
    }

    @Test func rendersAlignedFacts() throws {
        let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("notebooks-data/minilm-sample.h5").path
        let text = InspectText.render(DumpSummary(try Dump(path: sample)))
        let lines = text.split(separator: "\n")
        // The value column starts where the first run of two spaces ends, at the same offset on every line.
        let valueColumns = Set(
            lines.map { line -> Int in
                let chars = Array(line)
                var i = 2
                while i < chars.count && !(chars[i - 2] == " " && chars[i - 1] == " " && chars[i] != " ") { i += 1 }
                return i
            })
        #expect(valueColumns.count == 1)
        #expect(lines.first?.hasPrefix("file ") == true)
        #expect(lines.contains { $0.hasPrefix("query heads") && $0.hasSuffix(" 12") })
    }
}
