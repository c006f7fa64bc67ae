// `kvstat fit-lowrank --keep-sinks K` end to end: bad values and a state file are one-line usage errors (exit
// 64); a fit writes keep_sinks and attention_without_sinks to the manifest and fit.csv, and a sweep has the
// `+sinks` rows with memory including the sinks and cskv's attention errors with and without them.
import Foundation
import Testing

@Suite struct KeepSinksCLITests {
    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    @Test func badValuesAreUsageErrors() throws {
        for value in ["-1", "x", "1.5"] {
            let result = try CLI.run(["fit-lowrank", CLI.sample, "--keep-sinks", value, "-o", Self.temporary("ks")])
            #expect(result.status == 64, "--keep-sinks \(value)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(result.stderr.contains("--keep-sinks") || result.stderr.contains("keep-sinks"))
        }
    }

    @Test(.timeLimit(.minutes(5))) func stateFileIsRefused() throws {
        let state = Self.temporary("ks-state") + ".h5"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let analyze = try CLI.run([
            "analyze", CLI.sample, "--only", "spectra", "--save-state", state, "-o", Self.temporary("ks-an"),
            "--quiet",
        ])
        #expect(analyze.status == 0, "\(analyze.stderr)")
        let result = try CLI.run(["fit-lowrank", state, "--keep-sinks", "2", "-o", Self.temporary("ks")])
        #expect(result.status == 64)
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stderr.contains("--keep-sinks needs a dump"))
    }

    /// MiniLM (an encoder: --no-causal), pca at keep 0.25 with 2 sinks and a one-rung sweep.
    @Test(.timeLimit(.minutes(10))) func fitAndSweepRecordSinks() throws {
        let out = Self.temporary("ks-fit")
        let result = try CLI.run([
            "fit-lowrank", CLI.sample, "--keep-sinks", "2", "--no-causal", "--sweep", "--ladder", "0.25",
            "--window", "0", "-o", out,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("sink position(s) per sequence kept exact by attention_mass"))
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")))
                as? [String: Any])
        let sinks = try #require(manifest["keep_sinks"] as? [String: Any])
        #expect(sinks["count"] as? Int == 2)
        #expect(sinks["rule"] as? String == "attention_mass")
        let positions = try #require(sinks["positions"] as? [[Int]])
        #expect(positions.count == 3 && positions.allSatisfy { $0.count == 2 })
        #expect((manifest["options"] as? [String: Any])?["keep_sinks"] as? Int == 2)
        let without = try #require(manifest["attention_without_sinks"] as? [String: Any])
        #expect((without["outputs"] as? [Any])?.count == 6)
        // fit.csv: the attention columns, the last one filled.
        let csv = try String(contentsOfFile: out + "/fit.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first?.hasSuffix("attention_output_error,attention_output_error_without_sinks") == true)
        #expect(csv.dropFirst().allSatisfy { !$0.hasSuffix(",") })
        // sweep.csv: every method with and without sinks; the +sinks memory prices 2 rows per sequence in full.
        let sweep = try String(contentsOfFile: out + "/sweep.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        for method in ["pca", "xkv", "matryoshka", "cskv"] {
            let plain = try #require(sweep.first { $0[0] == method })
            let kept = try #require(sweep.first { $0[0] == method + "+sinks" })
            #expect(Double(kept[2])! > Double(plain[2])!, "\(method) memory")
        }
        let cskv = try #require(sweep.first { $0[0] == "cskv" })
        let cskvSinks = try #require(sweep.first { $0[0] == "cskv+sinks" })
        #expect(!cskv[5].isEmpty && !cskvSinks[5].isEmpty)
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(html.contains("attention output error without sinks"))
        // `eval` chooses the sinks on the dump it evaluates and says so; `compress` says it does not keep them.
        let eval = try CLI.run(["eval", "--artifact", out, CLI.sample])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(eval.stderr.contains("2 sink position(s) per sequence kept exact, chosen on this dump by"))
        let cache = Self.temporary("ks-cache") + ".h5"
        let compress = try CLI.run(["compress", CLI.sample, "--artifact", out, "-o", cache])
        #expect(compress.status == 0, "\(compress.stderr)")
        #expect(compress.stderr.contains("fitted with --keep-sinks 2, but the compressed cache stores the sink rows"))
    }
}
