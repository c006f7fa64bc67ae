// `kvstat compress` / `decompress` (issue 15) end to end on the bundled MiniLM sample: for every method, the
// round trip's error (decompressed vs original, computed independently with numpy) equals the fit's reported
// error; the file holds exactly the accounted payload plus its fixed costs; h5py rebuilds it as documented
// (Tests/Fixtures/compressed_roundtrip.py follows docs/compressed-format.md); bad inputs are one-line refusals.
import Foundation
import Testing

@Suite struct CompressCLITests {
    static let checker = CLI.repository.appendingPathComponent("Tests/Fixtures/compressed_roundtrip.py").path

    static func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "kvstat-compress-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// Fits `fit` on the sample into `folder/fit`, returning the manifest.
    static func fit(_ arguments: [String], in folder: String) throws -> [String: Any] {
        let fit = try CLI.run(["fit-lowrank", CLI.sample, "-o", folder + "/fit"] + arguments)
        #expect(fit.status == 0, "\(fit.stderr)")
        return try json(try String(contentsOfFile: folder + "/fit/manifest.json", encoding: .utf8))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var fit: [String]
        var compress: [String] = []
        /// Largest |error − fit error| allowed: float16 latents 1e-5; quantized latents are the fit's own codes.
        var tolerance = 1e-5
        var testDescription: String { (fit + compress).joined(separator: " ") }
    }

    static let cases: [Case] = [
        Case(fit: ["--method", "pca"]),
        Case(fit: ["--method", "pca", "--granularity", "head"]),
        Case(fit: ["--method", "pca", "--granularity", "group:4"]),
        Case(fit: ["--method", "xkv", "--group-size", "2"]),
        Case(fit: ["--method", "matryoshka"], compress: ["--rank-ratio", "0.5"]),
        Case(fit: ["--method", "cskv", "--window", "16"]),
        Case(fit: ["--method", "cskv", "--window", "16", "--quant", "int8"]),
        Case(fit: ["--method", "cskv", "--window", "24", "--quant", "int4", "--quant-group", "16"]),
    ]

    @Test(.timeLimit(.minutes(10)), arguments: cases)
    func roundTripMatchesTheFitsError(_ c: Case) throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let manifest = try Self.fit(c.fit, in: folder)
        let compressed = folder + "/cache.h5"
        let decompressed = folder + "/dump.h5"
        let compress = try CLI.run(
            ["compress", CLI.sample, "--artifact", folder + "/fit", "-o", compressed] + c.compress)
        #expect(compress.status == 0, "\(compress.stderr)")
        #expect(compress.stderr.contains("bytes on disk"))
        let decompress = try CLI.run(["decompress", compressed, "-o", decompressed])
        #expect(decompress.status == 0, "\(decompress.stderr)")

        // The fit's error at the ranks used (matryoshka: the rung's).
        var expected = try #require(
            ((manifest["fit"] as? [String: Any])?["overall"] as? [String: Any])?["all"] as? Double)
        let fitMemory = try #require(manifest["memory_ratio"] as? Double)
        var expectedMemory = fitMemory
        if let ratio = c.compress.last.flatMap(Double.init) {
            let ladder = try #require(manifest["ladder"] as? [[String: Any]])
            let rung = try #require(ladder.first { ($0["keep_ratio"] as? Double) == ratio })
            expected = try #require(rung["fit_error"] as? Double)
            expectedMemory = try #require(rung["memory_ratio"] as? Double)
        }
        let check = try Self.json(
            try CLI.run(["/usr/bin/env", "python3", Self.checker, CLI.sample, compressed, decompressed], direct: true)
                .stdout)
        let error = try #require(check["error"] as? Double)
        #expect(abs(error - expected) <= c.tolerance, "round trip \(error) vs fit \(expected)")
        #expect(check["schema_ok"] as? Bool == true)
        // numpy's rebuild from the documented schema equals kvstat's up to float16 output rounding (2⁻¹¹).
        #expect((check["numpy_vs_decompressed"] as? Double ?? 1) < 1e-3)

        // Bytes: the payload is the accounting's (quantized keys: partial groups at sequence/block ends cost a
        // little more), the file is payload + fixed costs + HDF5 metadata.
        let summary = try Self.json(compress.stdout)
        let m = try #require(summary["manifest"] as? [String: Any])
        let accounted = try #require(m["accounted_bytes"] as? Int)
        let payload = try #require(m["payload_bytes"] as? Int)
        let fixed = try #require(m["projection_bytes"] as? Int) + (try #require(m["group_index_bytes"] as? Int))
        let size = try #require(summary["compressed_file_bytes"] as? Int)
        #expect(abs((m["accounted_ratio"] as? Double ?? 0) - expectedMemory) < 1e-12)
        #expect(payload >= accounted && Double(payload) <= Double(accounted) * 1.01, "\(payload) vs \(accounted)")
        let attributes = try FileManager.default.attributesOfItem(atPath: compressed)
        #expect((attributes[.size] as? NSNumber)?.intValue == size)
        // HDF5's metadata: a few KiB per unit and per (kind, layer) window dataset, never more than 8 KiB each.
        let objects = (m["units"] as? [Any] ?? []).count + 2 * (m["layers"] as? [Any] ?? []).count
        let metadata = try #require(summary["metadata_bytes"] as? Int)
        #expect(metadata == size - payload - fixed)
        #expect(metadata > 0 && metadata < 8192 * objects + 65536, "\(metadata) bytes for \(objects) objects")
    }

    /// SmolLM2 (post-RoPE keys, pre-RoPE keys, GQA): a pre-RoPE key fit stores `key_pre_rope` and decompress also
    /// writes `key` = RoPE(rebuilt); each kind's round-trip error equals the fit's. And cskv int8 on the same dump.
    @Test(
        .timeLimit(.minutes(10)),
        arguments: [
            ["--keys", "pre-rope"],
            [
                "--method", "cskv", "--window", "32",
                "--quant", "int8",
            ],
        ])
    func smolLM2RoundTrip(_ fitArguments: [String]) throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let sample = CLI.repository.appendingPathComponent("notebooks-data/smollm2-sample.h5").path
        let fit = try CLI.run(["fit-lowrank", sample, "-o", folder + "/fit", "--quiet"] + fitArguments)
        #expect(fit.status == 0, "\(fit.stderr)")
        let manifest = try Self.json(try String(contentsOfFile: folder + "/fit/manifest.json", encoding: .utf8))
        let overall = try #require((manifest["fit"] as? [String: Any])?["overall"] as? [String: Any])
        #expect(try CLI.run(["compress", sample, "--artifact", folder + "/fit", "-o", folder + "/c.h5"]).status == 0)
        #expect(try CLI.run(["decompress", folder + "/c.h5", "-o", folder + "/d.h5"]).status == 0)
        let check = try Self.json(
            try CLI.run(
                ["/usr/bin/env", "python3", Self.checker, sample, folder + "/c.h5", folder + "/d.h5"], direct: true
            ).stdout)
        let perKind = try #require(check["per_kind"] as? [String: Double])
        let kinds = fitArguments.contains("pre-rope") ? ["key", "key_pre_rope", "value"] : ["key", "value"]
        #expect(perKind.keys.sorted() == kinds)
        for kind in kinds {
            let expected = try #require(overall[kind] as? Double)
            #expect(
                abs(perKind[kind, default: 9] - expected) < 1e-5, "\(kind): \(perKind[kind, default: 9]) vs \(expected)"
            )
        }
        #expect(abs((check["error"] as? Double ?? 9) - (overall["all"] as? Double ?? 0)) < 1e-5)
    }

    /// kvstat's own readers accept the rebuilt dump: eval of the same artifact on it runs, and analyze too.
    @Test(.timeLimit(.minutes(10))) func decompressedDumpIsReadByEvalAndAnalyze() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try Self.fit(["--method", "cskv", "--window", "8", "--quant", "int8"], in: folder)
        #expect(
            try CLI.run(["compress", CLI.sample, "--artifact", folder + "/fit", "-o", folder + "/c.h5"]).status == 0)
        #expect(try CLI.run(["decompress", folder + "/c.h5", "-o", folder + "/d.h5"]).status == 0)
        let eval = try CLI.run(["eval", "--artifact", folder + "/fit", folder + "/d.h5"])
        #expect(eval.status == 0, "\(eval.stderr)")
        let analyze = try CLI.run(["analyze", folder + "/d.h5", "-o", folder + "/a"])
        #expect(analyze.status == 0, "\(analyze.stderr)")
        // Replacing its own earlier output is allowed; replacing the cache it reads is not.
        #expect(try CLI.run(["decompress", folder + "/c.h5", "-o", folder + "/d.h5"]).status == 0)
        let over = try CLI.run(["decompress", folder + "/c.h5", "-o", folder + "/c.h5"])
        #expect(over.status == 73)
    }

    /// --layers, --sequences, --tokens: the cache holds exactly those tokens; their round-trip error equals
    /// eval's on the same selection.
    @Test(.timeLimit(.minutes(10))) func selectionIsCompressedAlone() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try Self.fit(["--method", "pca"], in: folder)
        let selection = ["--sequences", "0,2", "--tokens", "5:100"]
        let compress = try CLI.run(
            ["compress", CLI.sample, "--artifact", folder + "/fit", "-o", folder + "/c.h5", "--layers", "1,2"]
                + selection)
        #expect(compress.status == 0, "\(compress.stderr)")
        let m = try #require(try Self.json(compress.stdout)["manifest"] as? [String: Any])
        #expect(m["lengths"] as? [Int] == [95, 95])
        #expect(m["starts"] as? [Int] == [5, 5])
        #expect(m["layers"] as? [Int] == [1, 2])
        #expect(try CLI.run(["decompress", folder + "/c.h5", "-o", folder + "/d.h5"]).status == 0)
        let check = try Self.json(
            try CLI.run(
                ["/usr/bin/env", "python3", Self.checker, CLI.sample, folder + "/c.h5", folder + "/d.h5"], direct: true
            ).stdout)
        let eval = try Self.json(
            try CLI.run(["eval", "--artifact", folder + "/fit", CLI.sample] + selection).stdout)
        let perLayer = try #require(eval["per_layer"] as? [String: [Double]])
        // Layers 1 and 2 are positions 1, 2 of the sample's 0…5.
        let errors = ["key", "value"].flatMap { kind in [1, 2].map { perLayer[kind]![$0] } }
        let expected = (errors.reduce(0) { $0 + $1 * $1 } / Double(errors.count)).squareRoot()
        #expect(abs((check["error"] as? Double ?? 0) - expected) < 1e-5)
    }

    /// Each refusal: one stderr line, the documented exit code, nothing written.
    @Test(.timeLimit(.minutes(10))) func refusals() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try Self.fit(["--method", "matryoshka"], in: folder)
        let artifact = folder + "/fit"
        let out = folder + "/c.h5"
        let smollm = CLI.repository.appendingPathComponent("notebooks-data/smollm2-sample.h5").path
        let cases: [([String], Int32, String)] = [
            (["compress", smollm, "--artifact", artifact, "-o", out], 65, "another model"),
            (["compress", CLI.sample, "--artifact", artifact, "-o", CLI.sample], 73, "replace"),
            (["compress", CLI.sample, "--artifact", artifact, "-o", artifact + "/projections.h5"], 73, "replace"),
            (["compress", CLI.sample, "--artifact", folder + "/none", "-o", out], 66, "projections.h5"),
            (["compress", CLI.sample, "--artifact", artifact, "-o", out, "--rank-ratio", "0.3"], 64, "not a rung"),
            (["compress", CLI.sample, "--artifact", artifact, "-o", out, "--rank-ratio", "2"], 64, "rank-ratio"),
            (["compress", CLI.sample, "--artifact", artifact, "-o", out, "--layers", "9"], 65, "layers"),
            (["decompress", CLI.sample, "-o", out], 65, "not a kvstat compressed cache"),
            (["decompress", folder + "/missing.h5", "-o", out], 66, "no such file"),
        ]
        for (arguments, status, words) in cases {
            let result = try CLI.run(arguments)
            #expect(result.status == status, "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(result.stderr.contains(words), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
        // Another model: both shapes are named.
        let other = try CLI.run(["compress", smollm, "--artifact", artifact, "-o", out])
        #expect(other.stderr.contains("3 kv heads") && other.stderr.contains("12 kv heads"))
        // A user's file at -o is kept unless --force.
        try Data("mine".utf8).write(to: URL(fileURLWithPath: out))
        let kept = try CLI.run(["compress", CLI.sample, "--artifact", artifact, "-o", out])
        #expect(kept.status == 73)
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "mine")
        // No temporary file is left beside the outputs.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp-") }
        #expect(leftovers.isEmpty)
    }
}
