// `--sequences` and `--tokens` for fit-lowrank and eval (issue 12), through the built binary: a fit on part of
// a dump equals a fit on a dump file holding only those tokens (written with h5py at test time), the selection
// is recorded in the manifest and in eval's JSON, an artifact fitted on a part evaluates on any dump of its
// model, and bad values are one-line usage errors.
import Foundation
import KVStat
import Testing

@Suite struct SelectionCLITests {
    /// Writes to `path` sequences 0 and 2 of the sample, token positions 10..<130 of each (clipped to their
    /// lengths 192 and 110): the tokens `--sequences 0,2 --tokens 10:130` select, as a dump of their own.
    static func writeCut(_ path: String) throws {
        let script = """
            import sys, h5py, numpy as np
            src, dst = sys.argv[1], sys.argv[2]
            with h5py.File(src, "r") as f, h5py.File(dst, "w", libver=("earliest", "v110")) as g:
                for k, v in f.attrs.items():
                    g.attrs[k] = v
                lengths = f["lengths"][()]
                keep = [(b, 10, min(130, int(lengths[b]))) for b in (0, 2)]
                n = [hi - lo for _, lo, hi in keep]
                g["lengths"] = np.array(n, dtype=np.int64)
                for layer in f["layers"]:
                    for kind in f["layers"][layer]:
                        d = f["layers"][layer][kind]
                        out = np.zeros((2, d.shape[1], max(n), d.shape[3]), dtype=d.dtype)
                        for i, (b, lo, hi) in enumerate(keep):
                            out[i, :, : hi - lo] = d[b, :, lo:hi]
                        g.create_dataset(f"layers/{layer}/{kind}", data=out)
            """
        let result = try BatchCLITests.run(
            ["/usr/bin/env", "python3", "-c", script, CLI.sample, path], direct: true, limit: 120)
        try #require(result.status == 0, "writing the cut dump: \(result.stderr)")
    }

    static func manifest(_ folder: String) throws -> FitReport {
        try BatchCLITests.decoder.decode(
            FitReport.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json")))
    }

    /// Fit errors (fit and held-out), ranks and projections of `--sequences 0,2 --tokens 10:130` equal those of a
    /// fit on a file holding only those tokens; the manifest records the selection.
    @Test(arguments: ["pca", "cskv"])
    func aFitOnPartOfADumpEqualsAFitOnThosePartsAlone(method: String) throws {
        let work = FitCLITests.directory("selection-fit")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try Self.writeCut(work + "/cut.h5")
        let common =
            [
                "--method", method, "--keep-ratio", "0.25", "--holdout", "0.5", "--attention-queries", "0", "--quiet",
            ] + (method == "cskv" ? ["--window", "16"] : [])
        let part = try BatchCLITests.run(
            ["fit-lowrank", CLI.sample, "--sequences", "0,2", "--tokens", "10:130", "-o", work + "/part"] + common)
        try #require(part.status == 0, "\(part.stderr)")
        let alone = try BatchCLITests.run(["fit-lowrank", work + "/cut.h5", "-o", work + "/alone"] + common)
        try #require(alone.status == 0, "\(alone.stderr)")
        let a = try Self.manifest(work + "/part")
        let b = try Self.manifest(work + "/alone")
        #expect(a.source.selection == "sequences 0,2, tokens 10:130", "\(String(describing: a.source.selection))")
        #expect(a.options.sequences == [0, 2] && a.options.tokenRange == 10..<130)
        #expect(b.source.selection == nil)
        #expect(a.source.tokens == 220 && b.source.tokens == 220, "\(a.source.tokens) \(b.source.tokens)")
        #expect(a.split == b.split, "\(a.split) vs \(b.split)")
        #expect(a.units.map(\.rank) == b.units.map(\.rank))
        for (x, y) in zip(a.units, b.units) { #expect(abs(x.residualEnergy - y.residualEnergy) <= 1e-9) }
        for (errorsA, errorsB) in [(a.fit, b.fit), (try #require(a.heldOut), try #require(b.heldOut))] {
            #expect(errorsA.tokens == errorsB.tokens)
            for kind in ["key", "value"] {
                let pa = try #require(errorsA.perLayer[kind])
                let pb = try #require(errorsB.perLayer[kind])
                try #require(pa.count == 6 && pb.count == 6)
                for (x, y) in zip(pa, pb) {
                    let x = try #require(x)
                    let y = try #require(y)
                    #expect(abs(x - y) <= 1e-9 * max(1, y), "\(kind): \(x) vs \(y)")
                }
            }
        }
        // The projections span the same subspaces: every singular value of P_aᵀ P_b is 1.
        let compare = """
            import sys, h5py, numpy as np
            a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
            assert sorted(a) == sorted(b), (sorted(a), sorted(b))
            worst = 0.0
            for name in a:
                pa, pb = a[name]["proj"][()].astype(np.float64), b[name]["proj"][()].astype(np.float64)
                assert pa.shape == pb.shape, (name, pa.shape, pb.shape)
                s = np.linalg.svd(pa.T @ pb, compute_uv=False)
                worst = max(worst, float(np.max(np.abs(s - 1))))
            print(worst)
            sys.exit(0 if worst < 1e-4 else 1)
            """
        let check = try BatchCLITests.run(
            [
                "/usr/bin/env", "python3", "-c", compare, work + "/part/projections.h5",
                work + "/alone/projections.h5",
            ], direct: true, limit: 120)
        #expect(check.status == 0, "projections differ: \(check.stdout) \(check.stderr)")
    }

    /// `eval` of an artifact fitted on part of a dump runs on the whole dump and on any part, recording the part in
    /// its JSON; on the fitted part it gives the manifest's fit error.
    @Test func evalOfAnArtifactFittedOnAPart() throws {
        let work = FitCLITests.directory("selection-eval")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let fit = try BatchCLITests.run([
            "fit-lowrank", CLI.sample, "--tokens", "0:100", "--method", "pca", "--keep-ratio", "0.25",
            "--attention-queries", "0", "-o", work, "--quiet",
        ])
        try #require(fit.status == 0, "\(fit.stderr)")
        let manifest = try Self.manifest(work)
        #expect(manifest.source.selection == "tokens 0:100" && manifest.source.tokens == 300)

        let whole = try CLI.run(["eval", "--artifact", work, CLI.sample])
        try #require(whole.status == 0, "\(whole.stderr)")
        let wholeJSON = try #require(try JSONSerialization.jsonObject(with: Data(whole.stdout.utf8)) as? [String: Any])
        #expect(wholeJSON["tokens"] as? Int == 452)
        #expect(wholeJSON["selection"] == nil, "\(whole.stdout)")

        let same = try CLI.run(["eval", "--artifact", work, CLI.sample, "--tokens", ":100"])
        try #require(same.status == 0, "\(same.stderr)")
        let errors = try BatchCLITests.decoder.decode(FitReport.Errors.self, from: Data(same.stdout.utf8))
        #expect(errors.tokens == 300)
        #expect(errors.selection == "tokens 0:100")
        #expect(errors.selectedTokens == [0, 100])
        #expect(errors.selectedSequences == nil)
        let fitted = try #require(manifest.fit.overall["all"] ?? nil)
        let evaluated = try #require(errors.overall["all"] ?? nil)
        #expect(abs(fitted - evaluated) <= 1e-9, "\(fitted) vs \(evaluated)")

        let one = try CLI.run(["eval", "--artifact", work, CLI.sample, "--sequences", "1"])
        try #require(one.status == 0, "\(one.stderr)")
        let oneErrors = try BatchCLITests.decoder.decode(FitReport.Errors.self, from: Data(one.stdout.utf8))
        #expect(oneErrors.tokens == 150 && oneErrors.selection == "sequences 1" && oneErrors.selectedSequences == [1])
    }

    /// Bad values are one usage line (exit 64) before any work; a part the dump lacks is bad data (exit 65); a state
    /// file cannot be cut into parts (64).
    @Test func badSelectionsAreOneLine() throws {
        let work = FitCLITests.directory("selection-bad")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let fit = try BatchCLITests.run([
            "fit-lowrank", CLI.sample, "--method", "pca", "--attention-queries", "0", "-o", work + "/art", "--quiet",
        ])
        try #require(fit.status == 0, "\(fit.stderr)")
        let cases: [([String], Int32, String)] = [
            (["--tokens", "5:2"], 64, "--tokens"), (["--tokens", "x"], 64, "--tokens"),
            (["--sequences", "a-"], 64, "--sequences"), (["--sequences", "7"], 65, "sequences 7"),
            (["--tokens", "500:600"], 65, "no valid tokens"),
        ]
        for (extra, status, words) in cases {
            for command in [
                ["fit-lowrank", CLI.sample, "-o", work + "/never", "--quiet"] + extra,
                ["eval", "--artifact", work + "/art", CLI.sample] + extra,
            ] {
                let result = try CLI.run(command)
                #expect(result.status == status, "\(command): \(result.stderr)")
                let lines = result.stderr.split(separator: "\n")
                #expect(
                    lines.count == 1 && lines[0].hasPrefix("kvstat: error: ") && lines[0].contains(words),
                    "\(command): \(result.stderr)")
                #expect(result.stdout.isEmpty, "\(command)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: work + "/never"))
        let state = work + "/a.state.h5"
        let analyze = try CLI.run([
            "analyze", CLI.sample, "--only", "spectra", "-o", work + "/a", "--save-state", state, "--quiet",
        ])
        try #require(analyze.status == 0, "\(analyze.stderr)")
        let fromState = try CLI.run(["fit-lowrank", state, "--tokens", "0:10", "-o", work + "/never", "--quiet"])
        #expect(fromState.status == 64, "\(fromState.stderr)")
        #expect(fromState.stderr.split(separator: "\n").count == 1 && fromState.stderr.contains("a state file holds"))
    }
}
