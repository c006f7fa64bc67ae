// `kvstat merge` refuses a state file whose token-norm sketch (`norms_*`, `TokenNormSketch`) kvstat could not have
// written: a state saved by `analyze --save-state` is edited with h5py, and each edit must give exit 65 and one
// stderr line naming the file and the dataset, never a trap or a NaN in stats.json.
import Foundation
import Testing

@Suite struct TokenNormStateCLITests {
    /// Copies the state argv[1] to argv[2] and applies the edit argv[3] to layer 0's key sketch.
    static let edit = """
        import sys, shutil, h5py, numpy as np
        src, dst, case = sys.argv[1:4]
        shutil.copy(src, dst)
        g = "key/layer/0/"
        with h5py.File(dst, "r+") as f:
            def replace(name, data):
                del f[g + name]
                f[g + name] = data
            if case == "nan-smallest":
                f[g + "norms_smallest_norm"][3] = np.nan
            elif case == "zero-largest":
                f[g + "norms_largest_norm"][5] = 0.0
            elif case == "negative-smallest":
                f[g + "norms_smallest_norm"][0] = -1.0
            elif case == "too-many-smallest":
                replace("norms_smallest_norm", np.concatenate([f[g + "norms_smallest_norm"][()]] * 2))
                replace("norms_smallest_position", np.concatenate([f[g + "norms_smallest_position"][()]] * 2))
            elif case == "too-many-largest":
                replace("norms_largest_norm", np.concatenate([f[g + "norms_largest_norm"][()]] * 2))
                replace("norms_largest_position", np.concatenate([f[g + "norms_largest_position"][()]] * 2))
            elif case == "duplicate-bins":
                bins = f[g + "norms_bins"][()]
                bins[1] = bins[0]
                replace("norms_bins", bins)
            elif case == "overflowing-bins":
                replace("norms_bin_counts", np.full(f[g + "norms_bin_counts"].shape, 2 ** 62, dtype=np.int64))
            elif case == "bins-not-count":
                counts = f[g + "norms_bin_counts"][()]
                counts[0] -= 1
                replace("norms_bin_counts", counts)
            elif case == "negative-position":
                f[g + "norms_largest_position"][2, 1] = -1
            elif case != "none":
                sys.exit("unknown case " + case)
        """

    @Test func mergeRefusesSketchesKvstatCannotWrite() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("norm-state-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let state = folder + "/s.state.h5"
        let saved = try CLI.run([
            "analyze", CLI.sample, "--only", "outliers", "-o", folder + "/A", "--quiet", "--save-state", state,
        ])
        try #require(saved.status == 0, "\(saved.stderr)")
        let cases: [(name: String, dataset: String, words: String)] = [
            ("nan-smallest", "norms_smallest_norm", "non-finite"),
            ("zero-largest", "norms_largest_norm", "not finite and > 0"),
            ("negative-smallest", "norms_smallest_norm", "not finite and > 0"),
            ("too-many-smallest", "norms_smallest_norm", "holds 128 norms, more than the 64"),
            ("too-many-largest", "norms_largest_norm", "holds 128 norms, more than the 64"),
            ("duplicate-bins", "norms_bins", "twice"),
            ("overflowing-bins", "norms_bin_counts", "sum to more than norms_count"),
            ("bins-not-count", "norms_bin_counts", "not norms_count"),
            ("negative-position", "norms_largest_position", "negative position"),
        ]
        // The unedited copy merges: the edits, not the copy, are what is refused.
        for (name, dataset, words) in [("none", "", "")] + cases {
            let edited = folder + "/\(name).state.h5"
            let made = try CLI.run(["/usr/bin/env", "python3", "-c", Self.edit, state, edited, name], direct: true)
            try #require(made.status == 0, "\(made.stderr)")
            let out = folder + "/M-\(name)"
            let result = try CLI.run(["merge", edited, "-o", out, "--quiet"])
            if name == "none" {
                #expect(result.status == 0, "\(result.stderr)")
                continue
            }
            #expect(result.status == 65, "\(name): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(name): \(result.stderr)")
            #expect(
                result.stderr.hasPrefix("kvstat: error: \(edited): /key/layer/0/\(dataset): "),
                "\(name): \(result.stderr)")
            #expect(result.stderr.contains(words), "\(name): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out + "/stats.json"), "\(name)")
        }
    }
}
