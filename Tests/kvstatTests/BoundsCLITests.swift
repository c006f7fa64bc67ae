// Option values with explicit bounds (exit 64 naming the allowed range), selections matched against the dump
// without expanding them (exit 65 naming what the dump has), block sizes clipped to the dump, and runs that
// cannot fit in memory refused before allocating (exit 69).
import Foundation
import Testing

@Suite struct BoundsCLITests {
    /// Each bad numeric value: exit 64, with a message naming the option and what it accepts.
    @Test(arguments: [
        (["analyze", "--outlier-factor", "inf"], "--outlier-factor must be a finite number in (0, ∞) (got inf)"),
        (["analyze", "--outlier-factor", "nan"], "--outlier-factor must be a finite number in (0, ∞) (got nan)"),
        (["analyze", "--outlier-factor", "0"], "--outlier-factor must be a finite number in (0, ∞) (got 0.0)"),
        (["analyze", "--align-rank", "0"], "--align-rank must be at least 1 (got 0)"),
        (["analyze", "--dct-window", "1"], "--dct-window must be at least 2 (got 1)"),
        (["analyze", "--threads", "0"], "--threads must be in 1…1024 (got 0)"),
        (["analyze", "--threads", "5000"], "--threads must be in 1…1024 (got 5000)"),
        (["analyze", "--block-tokens=-3"], "--block-tokens must be at least 1 (got -3)"),
        (
            ["analyze", "--layers", "99999999999999999999"],
            "--layers: cannot read '99999999999999999999': '99999999999999999999' is too large"
        ),
        (["analyze", "--layers", "7-3"], "the range '7-3' ends before it starts"),
        (["analyze", "--sequences", "0,,1"], "--sequences: cannot read '0,,1'"),
        (
            ["analyze", "--tokens", "0:99999999999999999999"],
            "--tokens: '99999999999999999999' in '0:99999999999999999999' is too large"
        ),
        (["analyze", "--tokens", "9:3"], "--tokens: START must be below END"),
        (["fit-lowrank", "--keep-ratio", "nan"], "--keep-ratio must be a finite number in (0, 1] (got nan)"),
        (["fit-lowrank", "--keep-ratio", "1.5"], "--keep-ratio must be a finite number in (0, 1] (got 1.5)"),
        (["fit-lowrank", "--energy", "inf"], "--energy must be a finite number in (0, 1] (got inf)"),
        (["fit-lowrank", "--compression", "inf"], "--compression must be a finite number in [1, ∞) (got inf)"),
        (["fit-lowrank", "--compression", "nan"], "--compression must be a finite number in [1, ∞) (got nan)"),
        (["fit-lowrank", "--holdout", "nan"], "--holdout must be a finite number in [0, 1) (got nan)"),
        (["fit-lowrank", "--holdout", "1"], "--holdout must be a finite number in [0, 1) (got 1.0)"),
        (["fit-lowrank", "--rank", "0"], "--rank must be at least 1 (got 0)"),
        (
            ["fit-lowrank", "--ladder", "0.25,nan"],
            "--ladder: 1…64 comma-separated keep ratios, each a finite number in (0, 1]"
        ),
        (["fit-lowrank", "--ladder", "0.25,,0.5"], "--ladder: 1…64 comma-separated keep ratios"),
        (["fit-lowrank", "--group-size", "0"], "--group-size must be in 1…65536 (got 0)"),
        (["fit-lowrank", "--window=-1"], "--window must be at least 0 (got -1)"),
        (["fit-lowrank", "--quant-group", "9223372036854775807"], "--quant-group must be in 1…65536"),
        (["fit-lowrank", "--attention-queries", "1000001"], "--attention-queries must be in 0…1000000 (got 1000001)"),
    ])
    func badValueIsAUsageError(arguments: [String], message: String) throws {
        let result = try CLI.run([arguments[0], CLI.sample, "-o", "/tmp/never-written"] + arguments.dropFirst())
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains(message), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written"))
    }

    @Test(arguments: ["0", "257"]) func batchJobsAreBounded(jobs: String) throws {
        let result = try CLI.run(["batch", CLI.sample, "-o", "/tmp/never-written", "--jobs", jobs])
        #expect(result.status == 64)
        #expect(result.stderr.contains("--jobs must be in 1…256 (got \(jobs))"), "\(result.stderr)")
    }

    /// `--layers 0-1000000000` used to expand a billion numbers; now it is one range, refused at once with
    /// what the dump has.
    @Test(.timeLimit(.minutes(10))) func hugeSelectionsAreAnsweredAtOnce() throws {
        let start = Date()
        let layers = try CLI.run(["analyze", CLI.sample, "--layers", "0-1000000000", "-o", "/tmp/never-written"])
        #expect(layers.status == 65)
        #expect(
            layers.stderr
                == "kvstat: error: \(CLI.sample): --layers names layers 6-1000000000 that the dump does not have; "
                + "it has layers 0-5\n"
        )
        let sequences = try CLI.run([
            "analyze", CLI.sample, "--sequences", "2-9223372036854775807", "-o", "/tmp/never-written",
        ])
        #expect(sequences.status == 65)
        #expect(
            sequences.stderr.contains(
                "--sequences names sequences 3-9223372036854775807 that the dump does not have; it has sequences 0-2"))
        let fit = try CLI.run(["fit-lowrank", CLI.sample, "--layers", "4-1000000000", "-o", "/tmp/never-written"])
        #expect(fit.status == 65)
        #expect(fit.stderr.contains("--layers names layers 6-1000000000"), "\(fit.stderr)")
        #expect(Date().timeIntervalSince(start) < 20)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never-written"))
    }

    /// Any positive --block-tokens is accepted and clipped to the dump: Int.max used to trap on overflow and 2⁴⁰
    /// to allocate 70 TB.
    @Test(arguments: ["9223372036854775807", "1099511627776"]) func hugeBlockIsClipped(blockTokens: String) throws {
        let scan = try CLI.run(["inspect", CLI.sample, "--json", "--read-all", "--block-tokens", blockTokens])
        #expect(scan.status == 0, "\(scan.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(scan.stdout.utf8)) as? [String: Any])
        #expect((object["scan"] as? [String: Any])?["values"] as? Int == 6 * 3 * 452 * 384)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bounds-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let analyze = try CLI.run([
            "analyze", CLI.sample, "--layers", "0-1", "--only", "spectra,outliers", "--block-tokens", blockTokens,
            "-o", directory, "--quiet",
        ])
        #expect(analyze.status == 0, "\(analyze.stderr)")
    }

    /// A 600 KB dump declaring 64 layers of 16384 channels: --all-pairs would need 2016 pairs × 2 GiB per kind
    /// (8 TiB). The run is refused from the declared shapes, quickly and without allocating, with exit 69.
    @Test(.timeLimit(.minutes(10))) func runTooLargeForMemoryExits69() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bounds-wide-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = folder + "/wide.h5"
        let script = """
            import sys, h5py, numpy as np
            with h5py.File(sys.argv[1], "w") as f:
                for i in range(64):
                    for k in ("key", "value"):
                        data = np.ones((1, 128, 1, 128), dtype="f2")
                        f.create_dataset(f"layers/{i}/{k}", data=data, compression="gzip")
            """
        let made = try CLI.run(["/usr/bin/env", "python3", "-c", script, dump], direct: true)
        try #require(made.status == 0, "\(made.stderr)")
        let start = Date()
        let result = try CLI.run(["analyze", dump, "--all-pairs", "-o", folder + "/out"])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(
            result.stderr.hasPrefix("kvstat: error: \(dump): needs about 8.0 TiB (cross-layer products 7.9 TiB"),
            "\(result.stderr)")
        #expect(result.stderr.contains("available; drop --all-pairs"), "\(result.stderr)")
        let fit = try CLI.run(["fit-lowrank", dump, "--method", "xkv", "--group-size", "64", "-o", folder + "/fit"])
        #expect(fit.status == 69, "\(fit.stderr)")
        #expect(fit.stderr.contains("needs about"), "\(fit.stderr)")
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(!FileManager.default.fileExists(atPath: folder + "/out/stats.json"))
    }
}
