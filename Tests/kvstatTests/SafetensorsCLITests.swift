// Safetensors dumps through the built binary: a file and the same arrays in HDF5 give the same statistics, a
// vLLM KV-connector folder works with every command and is one batch dump, bad headers are one line and exit 65,
// folders without safetensors files exit 66, and a folder dump is never written into.
import Foundation
import Testing

/// Fixtures from Tests/Fixtures/make_safetensors_fixtures.py, made once per test process.
private enum Inputs {
    static let directory: String = {
        let folder = FitCLITests.directory("safetensors-cli")
        let script = CLI.repository.appendingPathComponent("Tests/Fixtures/make_safetensors_fixtures.py").path
        _ = try? CLI.run(["/usr/bin/env", "python3", script, folder], direct: true)
        atexit { try? FileManager.default.removeItem(atPath: Inputs.directory) }
        return folder
    }()

    static func path(_ name: String) -> String { directory + "/" + name }

    struct Bad: Decodable, Sendable, CustomTestStringConvertible {
        var path: String
        var code: Int32
        var contains: [String]
        var testDescription: String { path }
    }

    static func bad() throws -> [Bad] {
        try JSONDecoder().decode([Bad].self, from: Data(contentsOf: URL(fileURLWithPath: path("bad.json"))))
    }

    static func json(_ path: String) throws -> [String: Any] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }
}

/// Whether two JSON values are equal, numbers within `tolerance` relative; `where` names the first difference.
private func agree(_ a: Any, _ b: Any, tolerance: Double, at path: String = "") -> String? {
    switch (a, b) {
    case (let x as [String: Any], let y as [String: Any]):
        guard Set(x.keys) == Set(y.keys) else { return "\(path): keys \(x.keys.sorted()) vs \(y.keys.sorted())" }
        for key in x.keys.sorted() {
            if let difference = agree(x[key]!, y[key]!, tolerance: tolerance, at: path + "/" + key) {
                return difference
            }
        }
        return nil
    case (let x as [Any], let y as [Any]):
        guard x.count == y.count else { return "\(path): \(x.count) vs \(y.count) elements" }
        for (i, pair) in zip(x, y).enumerated() {
            if let difference = agree(pair.0, pair.1, tolerance: tolerance, at: path + "[\(i)]") { return difference }
        }
        return nil
    case (let x as NSNumber, let y as NSNumber):
        let (u, v) = (x.doubleValue, y.doubleValue)
        return abs(u - v) <= tolerance * max(abs(u), abs(v), 1e-300) || u == v ? nil : "\(path): \(u) vs \(v)"
    default:
        return "\(a)" == "\(b)" ? nil : "\(path): \(a) vs \(b)"
    }
}

@Suite struct SafetensorsCLITests {
    @Test func analyzeGivesTheSameNumbersAsTheSameArraysInHDF5() throws {
        let out = FitCLITests.directory("st-analyze")
        defer { try? FileManager.default.removeItem(atPath: out) }
        for (name, input) in [("st", "single.safetensors"), ("h5", "single.h5")] {
            let run = try CLI.run(["analyze", Inputs.path(input), "-o", out + "/" + name, "--quiet"])
            #expect(run.status == 0, "\(input): \(run.stderr)")
        }
        var a = try Inputs.json(out + "/st/stats.json")
        var b = try Inputs.json(out + "/h5/stats.json")
        // The same data: every statistic agrees; only what names the input (path, digest, dataset names) differs.
        for key in ["dump", "sources", "options"] { (a[key], b[key]) = (nil, nil) }
        #expect(agree(a, b, tolerance: 1e-12) == nil, "\(agree(a, b, tolerance: 1e-12) ?? "")")
        #expect((a["layers"] as? [Any])?.count == 3)
    }

    @Test func vllmFolderWorksWithEveryCommand() throws {
        let folder = Inputs.path("vllm")
        let out = FitCLITests.directory("st-vllm")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let inspect = try CLI.run(["inspect", folder, "--json", "--read-all"])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let summary = try #require(
            try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect(summary["layers"] as? Int == 4 && summary["kv_heads"] as? Int == 4 && summary["head_dim"] as? Int == 16)
        #expect(summary["dtype"] as? String == "bfloat16" && summary["path"] as? String == folder)
        let analyze = try CLI.run(["analyze", folder, "-o", out + "/analyze", "--quiet"])
        #expect(analyze.status == 0, "\(analyze.stderr)")
        // The digest: the layer files' bytes one after another, in byte order of their names.
        let hash = try CLI.run(
            [
                "/usr/bin/env", "python3", "-c",
                "import hashlib,glob,sys; h=hashlib.sha256()\n"
                    + "for p in sorted(glob.glob(sys.argv[1]+'/*.safetensors')): h.update(open(p,'rb').read())\n"
                    + "print(h.hexdigest())", folder,
            ], direct: true)
        let stats = try Inputs.json(out + "/analyze/stats.json")
        #expect(
            (stats["dump"] as? [String: Any])?["sha256"] as? String == hash.stdout.trimmingCharacters(in: .newlines))
        let fit = try CLI.run([
            "fit-lowrank", folder, "--method", "pca", "--keep-ratio", "0.5", "-o", out + "/fit", "--quiet",
        ])
        #expect(fit.status == 0, "\(fit.stderr)")
        let eval = try CLI.run(["eval", "--artifact", out + "/fit", folder])
        #expect(eval.status == 0, "\(eval.stderr)")
        // A folder dump is never written into (its files would be read next time).
        let into = try CLI.run(["analyze", folder, "-o", folder, "--quiet", "--force"])
        #expect(into.status == 73 && into.stderr.contains("writing into it would change it"), "\(into.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasSuffix(".f32") }
        #expect(files.count == 4 && files.allSatisfy { $0.hasSuffix(".safetensors") }, "\(files)")
    }

    @Test(arguments: try Inputs.bad())
    fileprivate func badInputIsOneLine(_ bad: Inputs.Bad) throws {
        let path = Inputs.path("bad/" + bad.path)
        let result = try CLI.run(["analyze", path, "-o", Inputs.path("bad-out-" + bad.path), "--quiet"])
        #expect(result.status == bad.code, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && result.stderr.hasPrefix("kvstat: error: "), "\(result.stderr)")
        for word in bad.contains {
            #expect(result.stderr.lowercased().contains(word.lowercased()), "\(word) in \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: Inputs.path("bad-out-" + bad.path)))
    }

    @Test func batchTakesAVLLMFolderAsOneDump() throws {
        let input = FitCLITests.directory("st-batch-in")
        let out = FitCLITests.directory("st-batch-out")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: out)
        }
        try FileManager.default.createDirectory(atPath: input + "/requests", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Inputs.path("vllm"), toPath: input + "/requests/req-1")
        try FileManager.default.copyItem(
            atPath: Inputs.path("single.safetensors"), toPath: input + "/single.safetensors")
        let first = try CLI.run(["batch", input, "-o", out, "--jobs", "1"])
        #expect(first.status == 0 && first.stderr.contains("2 done, 0 skipped, 0 failed"), "\(first.stderr)")
        let again = try CLI.run(["batch", input, "-o", out])
        #expect(again.status == 0 && again.stderr.contains("0 done, 2 skipped, 0 failed"), "\(again.stderr)")
        // A layer file rewritten: the folder's content id changes, so it runs again.
        let layer = input + "/requests/req-1/model.layers.1.self_attn.attn.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: layer))
        bytes[bytes.count - 1] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: layer))
        let changed = try CLI.run(["batch", input, "-o", out])
        #expect(changed.status == 0 && changed.stderr.contains("1 done, 1 skipped, 0 failed"), "\(changed.stderr)")
    }
}
