// `kvstat analyze`'s sinks section end to end: attention mass on the decoder sample (causal) and the encoder
// sample (`--no-causal`), the merged-state case that cannot judge it, and `--sink-queries` bounds.
import Foundation
import Testing

@Suite struct SinksCLITests {
    static let smolLM2 = CLI.repository.appendingPathComponent("notebooks-data/smollm2-sample.h5").path

    static func folder(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    static func stats(_ directory: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/stats.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func decoderSampleNamesItsSinkEverywhere() throws {
        let out = Self.folder("sinks-smollm2")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try CLI.run(["analyze", Self.smolLM2, "-o", out, "--quiet", "--only", "outliers"])
        #expect(result.status == 0, "\(result.stderr)")
        let sinks = try #require(try Self.stats(out)["attention_sinks"] as? [String: Any])
        #expect(sinks["judged"] as? Bool == true)
        #expect(sinks["causal"] as? Bool == true)
        let top = try #require((sinks["top_positions"] as? [[String: Any]])?.first)
        #expect(top["position"] as? Int == 0)
        let summary = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
        #expect(summary.contains("## Sinks"))
        #expect(summary.contains("- Attention mass: position 0 takes the largest share of attention in 9 of 10 layers"))
        #expect(summary.contains("- Key norm at position 0 (where it tops attention):"))
        let csv = try String(contentsOfFile: out + "/sinks.csv", encoding: .utf8)
        #expect(csv.hasPrefix("layer,criterion,kind,head,sequence,position,share,uniform_share,norm_ratio,"))
        #expect(csv.contains("\n27,attention_mass,,,,0,"))
        #expect(csv.split(separator: "\n").filter { $0.contains(",attention_mass_head,") }.count == 10 * 9)
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("Attention sinks: which criterion finds what"))
    }

    @Test func encoderSampleWithNoCausal() throws {
        let out = Self.folder("sinks-minilm")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try CLI.run(["analyze", CLI.sample, "-o", out, "--quiet", "--only", "outliers", "--no-causal"])
        #expect(result.status == 0, "\(result.stderr)")
        let stats = try Self.stats(out)
        let sinks = try #require(stats["attention_sinks"] as? [String: Any])
        #expect(sinks["causal"] as? Bool == false)
        #expect((stats["options"] as? [String: Any])?["causal"] as? Bool == false)
        #expect((sinks["layers"] as? [Any])?.count == 6)
    }

    /// A merge of saved states has no attention mass, and says so.
    @Test func statesCannotJudgeAttentionMass() throws {
        let out = Self.folder("sinks-state")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let save = try CLI.run([
            "analyze", CLI.sample, "-o", out + "/a", "--quiet", "--only", "outliers", "--save-state", out + "/a.h5",
        ])
        #expect(save.status == 0, "\(save.stderr)")
        let merge = try CLI.run(["merge", out + "/a.h5", "-o", out + "/m", "--quiet"])
        #expect(merge.status == 0, "\(merge.stderr)")
        let sinks = try #require(try Self.stats(out + "/m")["attention_sinks"] as? [String: Any])
        #expect(sinks["judged"] as? Bool == false)
        let summary = try String(contentsOfFile: out + "/m/summary.md", encoding: .utf8)
        #expect(summary.contains("Attention-mass sinks cannot be judged from state files"))
    }

    @Test(arguments: ["-1", "1000001", "nan"]) func sinkQueriesOutOfBounds(_ value: String) throws {
        let out = Self.folder("sinks-bad")
        let result = try CLI.run(["analyze", CLI.sample, "-o", out, "--quiet", "--sink-queries", value])
        #expect(result.status == 64)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("kvstat: error:") && lines[0].contains("--sink-queries"))
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
