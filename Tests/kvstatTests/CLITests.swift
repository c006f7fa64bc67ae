// End-to-end tests of the kvstat binary: output, exit codes and one-line errors, as a user sees them.
import Foundation
import Testing

/// Runs the built `kvstat` executable (next to the test bundle in .build/<config>/).
struct CLI {
    static let binary: URL = {
        if let override = ProcessInfo.processInfo.environment["KVSTAT_BIN"] { return URL(fileURLWithPath: override) }
        var directory = Bundle.main.bundleURL
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("kvstat")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("kvstat")
    }()

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let sample = repository.appendingPathComponent("notebooks-data/minilm-sample.h5").path
    static func fixture(_ name: String) -> String {
        repository.appendingPathComponent("Tests/Fixtures/dumps/\(name)").path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs kvstat with `arguments`, or with `direct`, the program `arguments[0]` itself.
    static func run(_ arguments: [String], direct: Bool = false) throws -> Result {
        let process = Process()
        process.executableURL = direct ? URL(fileURLWithPath: arguments[0]) : binary
        process.arguments = direct ? Array(arguments.dropFirst()) : arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite struct CLITests {
    @Test func inspectSampleAsText() throws {
        let result = try CLI.run(["inspect", CLI.sample])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("per-layer: /layers/{layer}/{kind}"))
        #expect(result.stdout.contains("452 valid of 576 stored"))
        #expect(result.stdout.contains("key, value, query"))
        #expect(result.stdout.contains("sentence-transformers/all-MiniLM-L6-v2"))
        #expect(result.stderr.isEmpty)
    }

    @Test func inspectSampleAsJSON() throws {
        let result = try CLI.run(["inspect", CLI.sample, "--json", "--read-all", "--block-tokens", "64"])
        #expect(result.status == 0, "\(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["schema"] as? String == "kvstat.inspect/1")
        #expect(object["layers"] as? Int == 6)
        #expect(object["kv_heads"] as? Int == 12)
        #expect(object["head_dim"] as? Int == 32)
        #expect(object["tokens"] as? Int == 452)
        #expect(object["sequence_lengths"] as? [Int] == [192, 150, 110])
        #expect(object["dtype"] as? String == "float16")
        let scan = try #require(object["scan"] as? [String: Any])
        #expect(scan["values"] as? Int == 6 * 3 * 452 * 384)
    }

    @Test func inspectReportsNonFiniteValues() throws {
        let result = try CLI.run(["inspect", CLI.fixture("nan_inf.h5"), "--read-all"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("layer0.key: 5"))
    }

    @Test func customLayoutOption() throws {
        let result = try CLI.run([
            "inspect", CLI.fixture("custom_thd.h5"), "--layout", CLI.fixture("custom_thd.layout.yaml"),
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("custom"))
    }

    /// Each bad input: exit code, and exactly one line on stderr naming the file and the problem.
    @Test(arguments: [
        ("bad_not_hdf5.h5", Int32(65), "not an HDF5 file"),
        ("bad_truncated.h5", 65, "truncated"),
        ("bad_missing_value.h5", 65, "layer 1 has no value tensor"),
        ("bad_shape_mismatch.h5", 65, "differs from"),
        ("bad_zero_tokens.h5", 65, "zero tokens"),
        ("bad_all_padded.h5", 65, "no valid tokens"),
        ("bad_lzf.h5", 65, "h5repack -f GZIP=4"),
        ("bad_absurd_shape.h5", 65, "cannot interpret a 6-D tensor"),
        ("bad_int_dtype.h5", 65, "stores int32"),
        ("bad_no_kv.h5", 65, "no key/value tensors found"),
        ("bad_query_heads.h5", 65, "not a multiple"),
        ("does-not-exist.h5", 66, "no such file"),
    ])
    func badInput(file: String, status: Int32, message: String) throws {
        let path = CLI.fixture(file)
        let result = try CLI.run(["inspect", path])
        #expect(result.status == status)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("kvstat: error: \(path): "))
        #expect(result.stderr.contains(message), "\(result.stderr)")
    }

    @Test func usageErrorsExit64() throws {
        let result = try CLI.run(["inspect", CLI.sample, "--block-tokens", "0"])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--block-tokens must be at least 1 (got 0)"))
    }
}

@Suite struct AnalyzeCLITests {
    @Test func analyzeSampleWritesEveryOutput() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("analyze-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try CLI.run(["analyze", CLI.sample, "-o", directory, "--layers", "0-2", "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        // .kvstat: the folder is kvstat's (OutputFolderMarker).
        #expect(
            files == [
                ".kvstat", "channels.csv", "frequency.csv", "layers.csv", "report.html", "similarity.csv",
                "sinks.csv", "spectra.csv", "stats.json", "summary.md",
            ])
        let stats = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/stats.json")))
                as? [String: Any])
        #expect(stats["schema"] as? String == "kvstat.stats/2")
        let layers = try #require(stats["layers"] as? [[String: Any]])
        #expect(layers.count == 3)
        let key = try #require(layers[0]["key"] as? [String: Any])
        #expect((key["singular_values"] as? [Double])?.count == 384)
        #expect((key["effective_rank"] as? [String: Int])?["0.9"] != nil)
        let similarity = try #require(stats["similarity"] as? [String: [[String: Any]]])
        #expect(Set(similarity.keys) == ["key", "value"])
        #expect(similarity["key"]?.map { [$0["layer_a"] as? Int, $0["layer_b"] as? Int] } == [[0, 1], [1, 2]])
        let summary = try String(contentsOfFile: directory + "/summary.md", encoding: .utf8)
        #expect(summary.contains("Reaching 90 % energy takes keys with"))
        let csv = try String(contentsOfFile: directory + "/similarity.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first == "kind,layer_a,layer_b,cosine,cka,subspace_alignment,channel_alignment")
        #expect(csv.count == 1 + 2 * 2)  // keys and values, pairs (0,1) and (1,2)
    }

    /// `analyze --save-state` on two parts of the sample, then `merge`, gives the whole run's statistics.
    @Test func saveStateAndMergeReproduceTheWholeRun() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let common = ["--layers", "0-2", "--quiet"]
        let whole = try CLI.run(["analyze", CLI.sample, "-o", directory + "/whole"] + common)
        let first = try CLI.run(
            ["analyze", CLI.sample, "-o", directory + "/a", "--sequences", "0", "--save-state", directory + "/a.h5"]
                + common)
        let second = try CLI.run(
            ["analyze", CLI.sample, "-o", directory + "/b", "--sequences", "1-2", "--save-state", directory + "/b.h5"]
                + common)
        #expect(whole.status == 0 && first.status == 0 && second.status == 0, "\(first.stderr)\(second.stderr)")
        let merged = try CLI.run([
            "merge", directory + "/a.h5", directory + "/b.h5", "-o", directory + "/merged", "--quiet",
        ])
        #expect(merged.status == 0, "\(merged.stderr)")
        func stats(_ name: String) throws -> [String: Any] {
            try #require(
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)/stats.json"))) as? [String: Any])
        }
        let w = try stats("whole")
        let m = try stats("merged")
        let a = try stats("a")
        let dumpW = try #require(w["dump"] as? [String: Any])
        let dumpM = try #require(m["dump"] as? [String: Any])
        #expect(dumpM["tokens"] as? Int == dumpW["tokens"] as? Int)
        #expect((a["dump"] as? [String: Any])?["tokens"] as? Int == 192)
        #expect(dumpM["sha256"] as? String == dumpW["sha256"] as? String)
        for layer in 0..<3 {
            let lw = try #require((w["layers"] as? [[String: Any]])?[layer]["value"] as? [String: Any])
            let lm = try #require((m["layers"] as? [[String: Any]])?[layer]["value"] as? [String: Any])
            #expect(lw["effective_rank"] as? [String: Int] == lm["effective_rank"] as? [String: Int])
            let sw = try #require(lw["singular_values"] as? [Double])
            let sm = try #require(lm["singular_values"] as? [Double])
            #expect(abs(sw[0] - sm[0]) <= 1e-5 * sw[0])
        }
    }

    @Test func mergeRejectsFilesThatAreNotStates() throws {
        let notState = try CLI.run(["merge", CLI.sample, "-o", "/tmp/never-written"])
        #expect(notState.status == 65)
        #expect(notState.stderr.contains("minilm-sample.h5: is not a kvstat state file"))
        #expect(notState.stderr.split(separator: "\n").count == 1)
        let missing = try CLI.run(["merge", "/nonexistent/state.h5", "-o", "/tmp/never-written"])
        #expect(missing.status == 66)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written"))
    }

    @Test func analyzeRejectsBadOptionsAndInputs() throws {
        let bad = try CLI.run(["analyze", CLI.sample, "--only", "spectra,nonsense"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("unknown section 'nonsense'"))
        let missing = try CLI.run(["analyze", CLI.fixture("bad_truncated.h5"), "-o", "/tmp/never-written"])
        #expect(missing.status == 65)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written"))
        let layers = try CLI.run(["analyze", CLI.sample, "--layers", "0-9", "-o", "/tmp/never-written"])
        #expect(layers.status == 65)
        #expect(
            layers.stderr.contains("--layers names layers 6-9 that the dump does not have; it has layers 0-5"),
            "\(layers.stderr)")
    }
}

@Suite struct FitCLITests {
    static func directory(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    }

    /// The artifacts load in Python: safetensors (numpy) and h5py hold the same orthonormal projections, and
    /// compressing/reconstructing the dump's keys with them in numpy gives the manifest's error.
    static let python = """
        import json, sys, h5py, numpy as np
        from safetensors.numpy import load_file
        out, dump = sys.argv[1], sys.argv[2]
        manifest = json.load(open(f"{out}/manifest.json"))
        tensors = load_file(f"{out}/projections.safetensors")
        with h5py.File(f"{out}/projections.h5", "r") as h:
            for unit in manifest["units"]:
                p = tensors[unit["name"] + ".proj"]
                assert p.shape == (unit["dimension"], unit["stored_rank"]), (unit["name"], p.shape)
                assert np.array_equal(p, h[unit["name"]]["proj"][()]), unit["name"]
                assert np.abs(p.T @ p - np.eye(p.shape[1])).max() < 1e-5, unit["name"]
        with h5py.File(dump, "r") as f:
            mask = f["attention_mask"][()].astype(bool)
            k = f["layers/0/key"][()].transpose(0, 2, 1, 3)[mask].reshape(int(mask.sum()), -1).astype(np.float64)
        p = tensors["layers.0.key.proj"].astype(np.float64)
        mu = tensors["layers.0.key.mean"].astype(np.float64)
        latent = (k - mu) @ p                       # compress: tokens x rank
        rebuilt = latent @ p.T + mu                 # reconstruct
        error = np.linalg.norm(k - rebuilt) / np.linalg.norm(k)
        expected = manifest["fit"]["per_layer"]["key"][0]
        assert abs(error - expected) < 1e-4, (error, expected)
        print("ok", error)
        """

    @Test func artifactsRoundTripThroughSafetensorsAndH5py() throws {
        let out = Self.directory("fit")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let fit = try CLI.run([
            "fit-lowrank", CLI.sample, "--method", "pca", "--center", "--keep-ratio", "0.25", "--layers", "0-2", "-o",
            out, "--quiet",
        ])
        #expect(fit.status == 0, "\(fit.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(
            files == [
                ".kvstat", "fit.csv", "manifest.json", "projections.h5", "projections.safetensors",
                "report.html",
            ])
        let check = try CLI.run(["/usr/bin/env", "python3", "-c", Self.python, out, CLI.sample], direct: true)
        #expect(check.status == 0 && check.stdout.hasPrefix("ok"), "\(check.stderr)")
        let csv = try String(contentsOfFile: out + "/fit.csv", encoding: .utf8).split(separator: "\n")
        let columns =
            "layer,kind,rank,dimension,fit_error,held_out_error,external_error,xkv_grouped_error,xkv_null_error,"
            + "xkv_per_layer_error,attention_logit_error,attention_output_error,attention_output_error_without_sinks"
        #expect(csv.first.map(String.init) == columns)
        #expect(csv.count == 1 + 2 * 3)
        // `kvstat eval` on the same dump reproduces the fit's own errors.
        let eval = try CLI.run(["eval", "--artifact", out, CLI.sample])
        #expect(eval.status == 0, "\(eval.stderr)")
        let evaluated = try #require(try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        let manifest = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")))
                as? [String: Any])
        let a = try #require((evaluated["overall"] as? [String: Double])?["all"])
        let b = try #require(((manifest["fit"] as? [String: Any])?["overall"] as? [String: Double])?["all"])
        #expect(abs(a - b) < 1e-9)
        #expect(manifest["schema"] as? String == "kvstat.fit/1")
        #expect((manifest["source"] as? [String: Any])?["sha256"] as? String != nil)
    }

    @Test func sweepWritesTheCurveAndMatryoshkaNamesHeads() throws {
        let out = Self.directory("sweep")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try CLI.run([
            "fit-lowrank", CLI.sample, "--method", "matryoshka", "--sweep", "--layers", "0-1", "--window", "16", "-o",
            out, "--quiet",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let sweep = try String(contentsOfFile: out + "/sweep.csv", encoding: .utf8).split(separator: "\n")
        #expect(sweep.first == "method,keep_ratio,memory_ratio,fit_error,held_out_error,attention_output_error")
        // Four methods and xKV's shuffled-token null at five keep ratios each; the quantization points: KIVI (6),
        // cskv int4 and int8 at each keep ratio (10), GEAR (3).
        #expect(sweep.count == 1 + 5 * 5 + 6 + 10 + 3)
        #expect(sweep.filter { $0.hasPrefix("kivi-int4-g32,0.25,") }.count == 1)
        #expect(sweep.filter { $0.hasPrefix("cskv-int4,") }.count == 5)
        #expect(sweep.filter { $0.hasPrefix("gear-int2-r0.0625-s0.01,") }.count == 1)
        #expect(sweep.filter { $0.hasPrefix("xkv_null,") }.count == 5)
        let header = try FileHandle(forReadingFrom: URL(fileURLWithPath: out + "/projections.safetensors")).readData(
            ofLength: 1 << 16)
        #expect(String(decoding: header, as: UTF8.self).contains("layers.1.value.heads.11.proj"))
    }

    @Test func badFitOptionsAreUsageErrors() throws {
        let two = try CLI.run(["fit-lowrank", CLI.sample, "--rank", "4", "--energy", "0.9"])
        #expect(two.status == 64 && two.stderr.contains("at most one of --rank"))
        let method = try CLI.run(["fit-lowrank", CLI.sample, "--method", "svd"])
        #expect(method.status == 64 && method.stderr.contains("choose pca, xkv, matryoshka or cskv"))
        let missing = try CLI.run(["eval", "--artifact", "/nonexistent", CLI.sample])
        #expect(missing.status == 66)
    }
}

@Suite struct ReportBrowserTests {
    /// The bundled sample's report (analyze + a matryoshka sweep with held-out tokens), rendered by headless
    /// Chromium: the picture is not blank and each of the six sections has its plot.
    @Test func sampleReportRendersInChromium() throws {
        let directory = FitCLITests.directory("report")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let analyze = try CLI.run(["analyze", CLI.sample, "-o", directory + "/stats", "--quiet"])
        let fit = try CLI.run([
            "fit-lowrank", CLI.sample, "--method", "matryoshka", "--sweep", "--holdout", "0.34", "--window", "32",
            "-o", directory + "/fit", "--quiet",
        ])
        #expect(analyze.status == 0 && fit.status == 0, "\(analyze.stderr)\(fit.stderr)")
        let report = try CLI.run(["report", directory + "/stats", "--fit", directory + "/fit"])
        #expect(report.status == 0, "\(report.stderr)")
        let html = try String(contentsOfFile: directory + "/stats/report.html", encoding: .utf8)
        #expect(!html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"))
        let shot = try CLI.run(
            [
                CLI.repository.appendingPathComponent("scripts/screenshot.sh").path, directory + "/stats/report.html",
                directory + "/shot.png",
            ], direct: true)
        try #require(shot.status == 0, "headless Chromium failed (scripts/setup.sh installs it): \(shot.stderr)")
        let check = try CLI.run(
            [
                "/usr/bin/env", "python3",
                CLI.repository.appendingPathComponent("Tests/Fixtures/check_report_png.py").path,
                directory + "/shot.png", "dump:table", "spectra", "similarity", "outliers", "frequency", "fits",
            ], direct: true)
        #expect(check.status == 0 && check.stdout.contains("ok"), "\(check.stdout)\(check.stderr)")
    }
}

@Suite struct NotebookDataTests {
    static let committed = CLI.repository.appendingPathComponent("notebooks-data/minilm-sample.kvstat").path

    /// The committed outputs beside the sample are what this kvstat computes (regenerate them with
    /// `kvstat analyze notebooks-data/minilm-sample.h5 -o notebooks-data/minilm-sample.kvstat --no-causal` after a
    /// change; MiniLM is an encoder).
    @Test func committedSampleOutputsAreCurrent() throws {
        let fresh = FitCLITests.directory("fresh")
        defer { try? FileManager.default.removeItem(atPath: fresh) }
        let run = try CLI.run(["analyze", CLI.sample, "-o", fresh, "--quiet", "--no-causal"])
        #expect(run.status == 0, "\(run.stderr)")
        func load(_ directory: String) throws -> [String: Any] {
            try #require(
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: directory + "/stats.json"))) as? [String: Any])
        }
        let a = try load(Self.committed)
        let b = try load(fresh)
        #expect(a["schema"] as? String == b["schema"] as? String)
        // Every section a fresh run writes is in the committed file (a new statistic means: regenerate it).
        #expect(Set(a.keys) == Set(b.keys), "regenerate notebooks-data/minilm-sample.kvstat")
        let la = try #require(a["layers"] as? [[String: Any]])
        let lb = try #require(b["layers"] as? [[String: Any]])
        #expect(la.count == lb.count)
        for (x, y) in zip(la, lb) {
            for kind in ["key", "value", "query"] {
                let sx = try #require((x[kind] as? [String: Any])?["singular_values"] as? [Double])
                let sy = try #require((y[kind] as? [String: Any])?["singular_values"] as? [Double])
                for (p, q) in zip(sx, sy) where p > 1e-3 * sx[0] {
                    #expect(abs(p - q) <= 1e-6 * p, "regenerate notebooks-data/minilm-sample.kvstat")
                }
                #expect(
                    (x[kind] as? [String: Any])?["effective_rank"] as? [String: Int] == (y[kind] as? [String: Any])?[
                        "effective_rank"] as? [String: Int])
            }
        }
        for name in [
            "layers.csv", "similarity.csv", "channels.csv", "frequency.csv", "spectra.csv", "sinks.csv", "report.html",
            "summary.md",
        ] {
            #expect(
                FileManager.default.fileExists(atPath: Self.committed + "/" + name),
                "\(name) is missing from notebooks-data")
        }
    }

    static let jupyter: Bool = {
        (try? CLI.run(
            ["/usr/bin/env", "python3", "-c", "import nbconvert, nbformat, pandas, matplotlib, ipykernel"], direct: true
        ).status) == 0
    }()

    /// explore.ipynb runs headless and redraws its two plots from the committed data.
    @Test(
        .enabled(
            if: NotebookDataTests.jupyter,
            "Jupyter (nbconvert, ipykernel), pandas and matplotlib are not installed: notebook not executed"))
    func exploreNotebookExecutes() throws {
        let out = FitCLITests.directory("notebook")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try CLI.run(
            [
                "/usr/bin/env", "python3", "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                CLI.repository.appendingPathComponent("notebooks-data/explore.ipynb").path, "--output-dir", out,
            ], direct: true)
        #expect(run.status == 0, "\(run.stderr)")
    }
}

/// xKV's shuffled-token control end to end: each group's entry sits on the right group with the group's rank,
/// fit.csv repeats it on the group's layers, the summary prints both gains, and the report has its table.
@Suite struct ShuffledNullCLITests {
    struct Manifest: Decodable {
        struct Unit: Decodable {
            var kind: String
            var layers: [Int]
            var rank: Int
        }
        struct Control: Decodable {
            var kind: String
            var layers: [Int]
            var rank: Int
            var perLayerRank: Int
            var groupedError, nullError, perLayerError, realGain, accountingGain: Double?
            enum CodingKeys: String, CodingKey {
                case kind, layers, rank
                case perLayerRank = "per_layer_rank"
                case groupedError = "grouped_error"
                case nullError = "null_error"
                case perLayerError = "per_layer_error"
                case realGain = "real_gain"
                case accountingGain = "accounting_gain"
            }
        }
        var units: [Unit]
        var layerGroups: [[Int]]
        var xkvNull: [Control]
        enum CodingKeys: String, CodingKey {
            case units
            case layerGroups = "layer_groups"
            case xkvNull = "xkv_null"
        }
    }

    @Test func xkvFitCarriesItsNull() throws {
        let out = FitCLITests.directory("xkv-null")
        let run = try CLI.run(["fit-lowrank", CLI.sample, "--method", "xkv", "--group-size", "4", "-o", out])
        #expect(run.status == 0, "\(run.stderr)")
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")))
        // Six layers in groups of 4: [0-3] and [4, 5], keys and values, each with its control.
        #expect(manifest.layerGroups == [[0, 1, 2, 3], [4, 5]])
        #expect(manifest.xkvNull.count == 4)
        for control in manifest.xkvNull {
            let unit = try #require(manifest.units.first { $0.kind == control.kind && $0.layers == control.layers })
            #expect(
                control.rank == unit.rank
                    && control.perLayerRank == (unit.rank + control.layers.count / 2)
                        / control.layers.count
            )
            let (grouped, null, perLayer) = (
                try #require(control.groupedError), try #require(control.nullError),
                try #require(control.perLayerError)
            )
            #expect(control.realGain == null - grouped && control.accountingGain == perLayer - null)
            // The per-layer fit is the null's own best allocation restricted to r per layer: never better.
            #expect(perLayer >= null - 1e-9, "\(control.kind) \(control.layers)")
        }
        let csv = try String(contentsOfFile: out + "/fit.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        for line in csv {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            let control = try #require(
                manifest.xkvNull.first { $0.kind == cells[1] && $0.layers.contains(Int(cells[0]) ?? -1) })
            #expect(Double(cells[8]) == control.nullError && Double(cells[9]) == control.perLayerError, "\(line)")
        }
        let stderr = run.stderr
        #expect(stderr.contains("xkv against its shuffled-token null") && stderr.contains("accounting gain"))
        let report = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        #expect(report.contains("cross-layer gain real?") && report.contains("<th>accounting gain</th>"))
    }
}
