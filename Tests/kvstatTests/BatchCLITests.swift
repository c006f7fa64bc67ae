// `kvstat batch` end to end, through the built binary: mixed good and bad inputs, resuming, content ids,
// the lock, unwritable and full output folders, inputs deleted mid-run, kill -9 at random moments, and a
// 4-task array on a real single-node Slurm — each checked against an uninterrupted single-machine run.
import Foundation
import Testing

@Suite(.serialized) struct BatchCLITests {
    /// A fresh folder holding the sample split into 3 single-sequence dumps (with `tags`, 3 more per tag:
    /// the same tensors, other bytes), plus `bad` copies of broken fixtures.
    static func inputs(tags: [String] = [], bad: Bool = false) throws -> String {
        let folder = FitCLITests.directory("batch-in")
        let split = CLI.repository.appendingPathComponent("Tests/Fixtures/split_sample.py").path
        var runs = [[split, CLI.sample, folder]]
        for tag in tags { runs.append([split, CLI.sample, folder + "/" + tag, tag]) }
        for arguments in runs {
            let result = try CLI.run(["/usr/bin/env", "python3"] + arguments, direct: true)
            try #require(result.status == 0, "split_sample.py: \(result.stderr)")
        }
        if bad {
            for name in ["bad_truncated.h5", "bad_not_hdf5.h5"] {
                try FileManager.default.copyItem(atPath: CLI.fixture(name), toPath: folder + "/" + name)
            }
        }
        return folder
    }

    static func stats(_ path: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// Singular values (σ ≥ 0.05 σ₁) within `tolerance` relative, and CKA and cosine within `tolerance`.
    static func expectSameStatistics(_ a: [String: Any], _ b: [String: Any], tolerance: Double) throws {
        let la = try #require(a["layers"] as? [[String: Any]]), lb = try #require(b["layers"] as? [[String: Any]])
        #expect(la.count == lb.count)
        for (x, y) in zip(la, lb) {
            for kind in ["key", "value"] {
                let sx = try #require((x[kind] as? [String: Any])?["singular_values"] as? [Double])
                let sy = try #require((y[kind] as? [String: Any])?["singular_values"] as? [Double])
                for (p, q) in zip(sx, sy) where q >= 0.05 * sy[0] { #expect(abs(p - q) <= tolerance * q) }
            }
        }
        for kind in ["key", "value"] {
            let px = try #require((a["similarity"] as? [String: Any])?[kind] as? [[String: Any]])
            let py = try #require((b["similarity"] as? [String: Any])?[kind] as? [[String: Any]])
            #expect(px.map { [$0["layer_a"] as? Int, $0["layer_b"] as? Int] } == py.map { [$0["layer_a"] as? Int, $0["layer_b"] as? Int] })
            for (x, y) in zip(px, py) {
                for measure in ["cka", "cosine"] {
                    // A measure null on one side and a number on the other is a difference too.
                    #expect((x[measure] is NSNull) == (y[measure] is NSNull), "\(kind) \(measure)")
                    if let p = x[measure] as? Double, let q = y[measure] as? Double { #expect(abs(p - q) <= tolerance) }
                }
            }
        }
    }

    static func leftovers(_ out: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.contains(".tmp") }
    }

    /// Bad dumps fail with their one-line reason, good ones are done, and the corpus equals one analysis of
    /// the whole sample; a rerun skips everything; renamed files are not redone; changed files are.
    @Test func mixedFolderResumesAndMergesTheCorpus() throws {
        let input = try Self.inputs(bad: true)
        let out = FitCLITests.directory("batch-out")
        defer { for d in [input, out] { try? FileManager.default.removeItem(atPath: d) } }
        let first = try CLI.run(["batch", input, "-o", out, "--jobs", "2"])
        #expect(first.status == 2, "\(first.stderr)")
        #expect(first.stderr.contains("3 done, 0 skipped, 2 failed"))
        #expect(first.stderr.contains("bad_truncated.h5: file is truncated"))
        #expect(first.stderr.contains("bad_not_hdf5.h5: not an HDF5 file"))
        let whole = try Self.stats(CLI.repository.appendingPathComponent("notebooks-data/minilm-sample.kvstat/stats.json").path)
        let corpus = try Self.stats(out + "/corpus/stats.json")
        #expect((corpus["dump"] as? [String: Any])?["tokens"] as? Int == 452)
        try Self.expectSameStatistics(corpus, whole, tolerance: 1e-5)
        #expect(Self.leftovers(out).isEmpty)

        let again = try CLI.run(["batch", input, "-o", out])
        #expect(again.status == 2 && again.stderr.contains("0 done, 3 skipped, 2 failed"), "\(again.stderr)")
        try FileManager.default.moveItem(atPath: input + "/seq1.h5", toPath: input + "/renamed.h5")
        let renamed = try CLI.run(["batch", input, "-o", out, "--log-json"])
        #expect(renamed.stderr.contains("\"done\":0") && renamed.stderr.contains("\"skipped\":3"), "\(renamed.stderr)")
        // New bytes, new content id: the changed file is analysed again and joins the corpus.
        let tagged = try CLI.run(["/usr/bin/env", "python3", CLI.repository.appendingPathComponent("Tests/Fixtures/split_sample.py").path,
                                  CLI.sample, input + "/more", "changed"], direct: true)
        #expect(tagged.status == 0)
        try FileManager.default.removeItem(atPath: input + "/more/seq1.h5")
        try FileManager.default.removeItem(atPath: input + "/more/seq2.h5")
        let changed = try CLI.run(["batch", input, "-o", out, "--log-json"])
        #expect(changed.stderr.contains("\"done\":1") && changed.stderr.contains("\"corpus_dumps\":4"), "\(changed.stderr)")
        #expect(((try Self.stats(out + "/corpus/stats.json"))["dump"] as? [String: Any])?["tokens"] as? Int == 452 + 192)
    }

    @Test func aSecondBatchOnTheSameOutputSaysSoAndExits() throws {
        let out = FitCLITests.directory("batch-lock")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = [out + "/.lock", "sleep", "5"]
        try holder.run()
        defer { holder.terminate() }
        Thread.sleep(forTimeInterval: 0.5)
        let second = try CLI.run(["batch", CLI.sample, "-o", out])
        #expect(second.status == 1)
        #expect(second.stderr.contains("another kvstat batch"), "\(second.stderr)")
    }

    @Test func unwritableOutputIsOneClearError() throws {
        let result = try CLI.run(["batch", CLI.sample, "-o", "/proc/kvstat-cannot-write-here"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot create output folder /proc/kvstat-cannot-write-here"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    /// A dump that disappears before its turn fails alone ("no such file"); the others finish.
    @Test func dumpDeletedWhileTheBatchRuns() throws {
        let input = try Self.inputs(tags: ["b"])
        let out = FitCLITests.directory("batch-deleted")
        defer { for d in [input, out] { try? FileManager.default.removeItem(atPath: d) } }
        try "\(input)/seq0.h5\n\(input)/b/seq0.h5\n\(input)/b/seq1.h5\n\(input)/seq2.h5\n".write(toFile: input + "/list.txt", atomically: true, encoding: .utf8)
        let batch = Process()
        batch.executableURL = CLI.binary
        batch.arguments = ["batch", input + "/list.txt", "-o", out, "--log-json"]
        let err = Pipe()
        batch.standardError = err
        try batch.run()
        // Delete the last dump of the sorted list once the first one is running.
        var seen = ""
        while !seen.contains("\"event\":\"running\"") {
            seen += String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
        }
        try FileManager.default.removeItem(atPath: input + "/seq2.h5")
        seen += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        batch.waitUntilExit()
        #expect(batch.terminationStatus == 2, "\(seen)")
        #expect(seen.contains("\"done\":3") && seen.contains("seq2.h5"), "\(seen)")
        #expect(Self.leftovers(out).isEmpty)
    }

    /// kill -9 at random moments, then reruns until one finishes: the corpus equals an uninterrupted run's
    /// and no temporary file or child process is left.
    @Test func killNineAtRandomMomentsThenResume() throws {
        let input = try Self.inputs(tags: ["b", "c"])
        let reference = FitCLITests.directory("batch-reference"), out = FitCLITests.directory("batch-killed")
        defer { for d in [input, reference, out] { try? FileManager.default.removeItem(atPath: d) } }
        let clean = try CLI.run(["batch", input, "-o", reference, "--jobs", "2", "--quiet"])
        #expect(clean.status == 0, "\(clean.stderr)")
        var generator = SystemRandomNumberGenerator()
        var kills = 0, runs = 0
        while kills < 10 && runs < 40 {
            runs += 1
            let batch = Process()
            batch.executableURL = CLI.binary
            batch.arguments = ["batch", input, "-o", out, "--jobs", "2", "--quiet"]
            try batch.run()
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...1.2, using: &generator))
            if batch.isRunning {
                kill(batch.processIdentifier, SIGKILL)
                kills += 1
            }
            batch.waitUntilExit()
        }
        let finish = try CLI.run(["batch", input, "-o", out, "--jobs", "2", "--log-json"])
        #expect(finish.status == 0, "\(finish.stderr)")
        #expect(finish.stderr.contains("\"corpus_dumps\":9"), "\(finish.stderr)")
        try Self.expectSameStatistics(try Self.stats(out + "/corpus/stats.json"), try Self.stats(reference + "/corpus/stats.json"), tolerance: 1e-9)
        #expect(Self.leftovers(out).isEmpty)
        let children = try CLI.run(["/usr/bin/pgrep", "-f", out], direct: true)
        #expect(children.stdout.isEmpty, "orphan processes: \(children.stdout)")
        #expect(kills == 10)
        print("kill -9 test: \(kills) of \(runs) runs killed mid-flight, then resumed")
    }

    static let canMount: Bool = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/mount")

    /// OUT on a 6 MiB tmpfs: every dump's state file fails the free-space check (each child exits 73 with one
    /// "No space left" line), so nothing could run (exit 1); nothing half-written remains.
    @Test(.enabled(if: BatchCLITests.canMount, "needs root to mount a small tmpfs"))
    func fullDiskFailsCleanly() throws {
        let input = try Self.inputs()
        let mountPoint = FitCLITests.directory("batch-full")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer {
            _ = try? CLI.run(["/usr/bin/umount", mountPoint], direct: true)
            for d in [input, mountPoint] { try? FileManager.default.removeItem(atPath: d) }
        }
        let mount = try CLI.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mountPoint], direct: true)
        try #require(mount.status == 0, "cannot mount tmpfs: \(mount.stderr)")
        let result = try CLI.run(["batch", input, "-o", mountPoint + "/out"])
        #expect(result.status == 1, "\(result.stderr)")
        let failures = result.stderr.split(separator: "\n").filter { $0.hasPrefix("kvstat batch: failed: ") }
        #expect(failures.count == 3, "\(result.stderr)")
        for line in failures {
            #expect(line.contains("/state.h5: No space left: it needs about ")
                    && line.hasSuffix("free (kvstat analyze exit 73)"), "\(line)")
        }
        #expect(Self.leftovers(mountPoint + "/out").isEmpty)
        let entries = try FileManager.default.contentsOfDirectory(atPath: mountPoint + "/out")
        for id in entries where !id.hasPrefix(".") && !id.hasPrefix("ledger") && id != "corpus" {
            #expect(FileManager.default.fileExists(atPath: "\(mountPoint)/out/\(id)/stats.json"), "half-written output \(id)")
        }
    }

    static let slurm: Bool = ["slurmctld", "slurmd", "sbatch", "munged"].allSatisfy { tool in
        (try? CLI.run(["/usr/bin/which", tool], direct: true).status) == 0
    }

    /// A 4-task Slurm job array (examples/slurm/kvstat-array.sbatch) on a real single-node Slurm, merged with
    /// `kvstat merge`, equals the single-machine batch.
    @Test(.enabled(if: BatchCLITests.slurm, "Slurm (slurm-wlm) and munge are not installed: scripts/setup.sh installs them"))
    func slurmJobArrayEqualsTheSingleMachineBatch() throws {
        let input = try Self.inputs(tags: ["b"])
        let work = FitCLITests.directory("slurm")
        defer { for d in [input, work] { try? FileManager.default.removeItem(atPath: d) } }
        let run = try CLI.run([CLI.repository.appendingPathComponent("scripts/slurm-array-test.sh").path, CLI.binary.path, input, work], direct: true)
        if run.status == 77 {
            print(run.stderr)
            return
        }
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        try Self.expectSameStatistics(try Self.stats(work + "/array-corpus/stats.json"), try Self.stats(work + "/single/corpus/stats.json"), tolerance: 1e-9)
        #expect(((try Self.stats(work + "/array-corpus/stats.json"))["dump"] as? [String: Any])?["tokens"] as? Int == 904)
    }

    // MARK: hygiene

    /// OUT inside the input folder: a rerun takes none of OUT's files (state files, outputs) for dumps, says how
    /// many it left out, and a file named inside OUT is refused.
    @Test func outputInsideTheInputFolderIsNeverAnInput() throws {
        let input = try Self.inputs()
        defer { try? FileManager.default.removeItem(atPath: input) }
        let out = input + "/out"
        let first = try CLI.run(["batch", input, "-o", out, "--log-json"])
        #expect(first.status == 0 && first.stderr.contains("\"done\":3"), "\(first.stderr)")
        let marker = try Self.stats(out + "/.kvstat")
        #expect(marker["command"] as? String == "batch")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: out).first { $0.count == 16 })
        try FileManager.default.copyItem(atPath: "\(out)/\(id)/state.h5", toPath: input + "/copied-state.h5")
        let again = try CLI.run(["batch", input, "-o", out, "--log-json"])
        #expect(again.status == 0, "\(again.stderr)")
        // 3 dumps' state.h5 and the corpus's inside OUT, and the copied state file.
        #expect(again.stderr.contains("\"skipped\":3") && again.stderr.contains("\"failed\":0")
                && again.stderr.contains("\"ignored\":5"), "\(again.stderr)")
        let plain = try CLI.run(["batch", input, "-o", out])
        #expect(plain.stderr.contains("5 files kvstat wrote left out of the inputs"), "\(plain.stderr)")
        let named = try CLI.run(["batch", "\(out)/\(id)/state.h5", "-o", out])
        #expect(named.status == 64, "\(named.stderr)")
        #expect(named.stderr.split(separator: "\n").count == 1
                && named.stderr.contains("state.h5: is inside the output folder"), "\(named.stderr)")
    }

    /// Pass-through arguments that would redirect or silence the children's outputs, or name another input,
    /// are usage errors at once (exit 64), before OUT is created.
    @Test(arguments: [
        ["--analyze-arg=-o", "--analyze-arg=/tmp/elsewhere"], ["--analyze-arg=--output=/tmp/elsewhere"],
        ["--analyze-arg=--save-state", "--analyze-arg=/tmp/s.h5"], ["--analyze-arg=--log-json"],
        ["--analyze-arg=--quiet"], ["--analyze-arg=--timings"], ["--analyze-arg=--force"], ["--analyze-arg=other.h5"],
        ["--fit", "--method pca -o /tmp/elsewhere"], ["--fit", "--quiet"], ["--fit", "--log-json"],
        ["--fit", "other.h5"], ["--analyze-arg=--dct-window", "--analyze-arg=1"], ["--fit", "--method svd"],
    ])
    func passThroughArgumentsThatChangeOutputsAreRefused(arguments: [String]) throws {
        let out = FitCLITests.directory("batch-passthrough")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try CLI.run(["batch", CLI.sample, "-o", out] + arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("kvstat: error: --"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// An OUT holding the user's files is refused (left as it was) unless --force, which does not mark it.
    @Test func anOutputFolderOfTheUserIsRefused() throws {
        let input = try Self.inputs()
        let out = FitCLITests.directory("batch-user-out")
        defer { for d in [input, out] { try? FileManager.default.removeItem(atPath: d) } }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "my notes\n".write(toFile: out + "/notes.md", atomically: true, encoding: .utf8)
        let refused = try CLI.run(["batch", input, "-o", out])
        #expect(refused.status == 1, "\(refused.stderr)")
        let expected = "kvstat batch: error: \(out): exists and holds files kvstat did not write; choose another -o, or --force\n"
        #expect(refused.stderr == expected)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["notes.md"])
        let forced = try CLI.run(["batch", input, "-o", out, "--force", "--quiet"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try String(contentsOfFile: out + "/notes.md", encoding: .utf8) == "my notes\n")
        #expect(!FileManager.default.fileExists(atPath: out + "/.kvstat"))
    }
}

@Suite struct BatchFitTests {
    /// `batch --fit`: each dump gets its projections, and the corpus gets projections calibrated on every
    /// token, equal to a fit on the dump the pieces were cut from.
    @Test func corpusProjectionsEqualAFitOnTheWholeDump() throws {
        let input = try BatchCLITests.inputs()
        let out = FitCLITests.directory("batch-fit"), whole = FitCLITests.directory("whole-fit")
        defer { for d in [input, out, whole] { try? FileManager.default.removeItem(atPath: d) } }
        let batch = try CLI.run(["batch", input, "-o", out, "--fit", "--method pca --keep-ratio 0.25 --attention-queries 0", "--jobs", "2"])
        #expect(batch.status == 0, "\(batch.stderr)")
        let single = try CLI.run(["fit-lowrank", CLI.sample, "--method", "pca", "--keep-ratio", "0.25", "--attention-queries", "0", "-o", whole, "--quiet"])
        #expect(single.status == 0, "\(single.stderr)")
        let corpus = try BatchCLITests.stats(out + "/corpus/fit/manifest.json"), reference = try BatchCLITests.stats(whole + "/manifest.json")
        let a = try #require(((corpus["fit"] as? [String: Any])?["overall"] as? [String: Double])?["all"])
        let b = try #require(((reference["fit"] as? [String: Any])?["overall"] as? [String: Double])?["all"])
        #expect(abs(a - b) <= 1e-5, "corpus fit \(a) vs whole-dump fit \(b)")
        let perDump = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.count == 16 }
        #expect(perDump.count == 3)
        for id in perDump { #expect(FileManager.default.fileExists(atPath: "\(out)/\(id)/fit/projections.safetensors")) }
    }
}
