// `kvstat batch` end to end, through the built binary: mixed good and bad inputs, resuming, content ids,
// the lock, unwritable and full output folders, inputs deleted mid-run, kill -9 at seeded random moments, a
// corpus state that no longer loads, and a 4-task array on a real single-node Slurm — each checked against an
// uninterrupted single-machine run. Every run and every wait has a time limit that fails the test, never a hang.
import Foundation
import KVStat
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
            let result = try run(["/usr/bin/env", "python3"] + arguments, direct: true)
            try #require(result.status == 0, "split_sample.py: \(result.stderr)")
        }
        if bad {
            for name in ["bad_truncated.h5", "bad_not_hdf5.h5"] {
                try FileManager.default.copyItem(atPath: CLI.fixture(name), toPath: folder + "/" + name)
            }
        }
        return folder
    }

    // MARK: running with time limits

    /// A pipe read to its end on its own thread, so that a full pipe never stalls the writer and the text so
    /// far can be polled.
    final class PipeText: @unchecked Sendable {
        // @unchecked Sendable: `data` is only touched under `lock`.
        private let lock = NSLock()
        private var data = Data()
        private let ended = DispatchSemaphore(value: 0)

        init(_ handle: FileHandle) {
            Thread.detachNewThread { [self] in
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    lock.withLock { data.append(chunk) }
                }
                ended.signal()
            }
        }

        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }

        /// Waits at most `seconds` for the end of the pipe (a grandchild may hold it open).
        func waitForEnd(seconds: Double = 10) { _ = ended.wait(timeout: .now() + seconds) }
    }

    /// Waits for `process` to exit, at most `limit` seconds: past it, SIGTERM (a script's cleanup trap runs),
    /// then SIGKILL, and the test fails naming `what`.
    static func waitForExit(_ process: Process, limit: Double, _ what: @autoclosure () -> String) {
        let deadline = Date().addingTimeInterval(limit)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let grace = Date().addingTimeInterval(15)
        while process.isRunning && Date() < grace { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        Issue.record("\(what()) still ran after \(Int(limit)) s and was killed")
    }

    /// As `CLI.run` (kvstat, or with `direct` the program `arguments[0]`), within `limit` seconds.
    static func run(_ arguments: [String], direct: Bool = false, limit: Double = 300) throws -> CLI.Result {
        let process = Process()
        process.executableURL = direct ? URL(fileURLWithPath: arguments[0]) : CLI.binary
        process.arguments = direct ? Array(arguments.dropFirst()) : arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = PipeText(out.fileHandleForReading)
        let stderr = PipeText(err.fileHandleForReading)
        waitForExit(process, limit: limit, "\(arguments.joined(separator: " ")) (stderr so far: \(stderr.text))")
        stdout.waitForEnd()
        stderr.waitForEnd()
        return CLI.Result(status: process.terminationStatus, stdout: stdout.text, stderr: stderr.text)
    }

    // MARK: reading outputs, typed

    /// A stats.json as KVStat's own StatsReport.
    static func report(_ path: String) throws -> StatsReport {
        try decoder.decode(StatsReport.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return decoder
    }()

    /// A JSON file as a dictionary (used by OutputSafetyCLITests).
    static func stats(_ path: String) throws -> [String: Any] { try json(path) }

    static func json(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path)")
    }

    /// The events of a `--log-json` run: every stderr line is one JSON object.
    static func events(_ stderr: String) throws -> [[String: Any]] {
        try stderr.split(separator: "\n").map { line in
            try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                "not an event: \(line)")
        }
    }

    /// The one `summary` event of a `--log-json` run.
    static func summary(_ stderr: String) throws -> [String: Any] {
        let summaries = try events(stderr).filter { $0["event"] as? String == "summary" }
        try #require(summaries.count == 1, "\(stderr)")
        return summaries[0]
    }

    /// The summary's counts are exactly `expected` (each key must be there).
    static func expectCounts(
        _ stderr: String, _ expected: [String: Int], _ context: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let summary = try summary(stderr)
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            #expect(summary[key] as? Int == value, "\(key) \(context): \(stderr)", sourceLocation: sourceLocation)
        }
    }

    /// The same layers, kinds and layer pairs; singular values (σ ≥ 0.05 σ₁) within `tolerance` relative, and
    /// CKA and cosine within `tolerance`, null on both sides or on neither.
    static func expectSameStatistics(
        _ a: StatsReport, _ b: StatsReport, tolerance: Double, _ context: String = ""
    )
        throws
    {
        #expect(a.dump.tokens == b.dump.tokens, "\(context)")
        #expect(a.layers.map(\.layer) == b.layers.map(\.layer), "\(context)")
        try #require(!a.layers.isEmpty, "\(context)")
        for (x, y) in zip(a.layers, b.layers) {
            #expect(Set(x.kinds.keys) == Set(y.kinds.keys), "layer \(x.layer) \(context)")
            for kind in [TensorKind.key, .value] {
                let sx = try #require(x.kinds[kind]?.singularValues, "layer \(x.layer) \(kind) \(context)")
                let sy = try #require(y.kinds[kind]?.singularValues, "layer \(y.layer) \(kind) \(context)")
                try #require(sx.count == sy.count && !sy.isEmpty, "layer \(x.layer) \(kind) \(context)")
                for (p, q) in zip(sx, sy) where q >= 0.05 * sy[0] {
                    #expect(abs(p - q) <= tolerance * q, "layer \(x.layer) \(kind): \(p) vs \(q) \(context)")
                }
            }
        }
        #expect(Set(a.similarity.keys) == Set(b.similarity.keys), "\(context)")
        for kind in ["key", "value"] {
            let px = try #require(a.similarity[kind])
            let py = try #require(b.similarity[kind])
            try #require(
                !px.isEmpty && px.map { [$0.layerA, $0.layerB] } == py.map { [$0.layerA, $0.layerB] },
                "\(kind) pairs \(context)")
            for (x, y) in zip(px, py) {
                for (measure, p, q) in [("cka", x.cka, y.cka), ("cosine", x.cosine, y.cosine)] {
                    // A measure null on one side and a number on the other is a difference too.
                    #expect((p == nil) == (q == nil), "\(kind) \(measure) \(x.layerA)-\(x.layerB) \(context)")
                    if let p, let q { #expect(abs(p - q) <= tolerance, "\(kind) \(measure): \(p) vs \(q) \(context)") }
                }
            }
        }
    }

    /// Temporary files and folders left in `out`, which must exist (a missing folder is a failure, not "none").
    static func temporaries(in out: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp") }
    }

    /// As `temporaries(in:)`, none for a folder that does not exist (used by OutputSafetyCLITests).
    static func leftovers(_ out: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).filter { $0.contains(".tmp") }
    }

    /// Bad dumps fail with their one-line reason, good ones are done, and the corpus equals one analysis of
    /// the whole sample; a rerun skips everything; renamed files are not redone; changed files are.
    @Test func mixedFolderResumesAndMergesTheCorpus() throws {
        let input = try Self.inputs(bad: true)
        let out = FitCLITests.directory("batch-out")
        defer { for d in [input, out] { try? FileManager.default.removeItem(atPath: d) } }
        let first = try Self.run(["batch", input, "-o", out, "--jobs", "2"])
        #expect(first.status == 2, "\(first.stderr)")
        #expect(first.stderr.contains("kvstat batch: 3 done, 0 skipped, 2 failed;"), "\(first.stderr)")
        #expect(first.stderr.contains("bad_truncated.h5: file is truncated"))
        #expect(first.stderr.contains("bad_not_hdf5.h5: not an HDF5 file"))
        let whole = try Self.report(
            CLI.repository.appendingPathComponent("notebooks-data/minilm-sample.kvstat/stats.json").path)
        let corpus = try Self.report(out + "/corpus/stats.json")
        #expect(corpus.dump.tokens == 452)
        try Self.expectSameStatistics(corpus, whole, tolerance: 1e-5)
        #expect(try Self.temporaries(in: out).isEmpty)

        let again = try Self.run(["batch", input, "-o", out])
        #expect(
            again.status == 2 && again.stderr.contains("kvstat batch: 0 done, 3 skipped, 2 failed;"),
            "\(again.stderr)")
        try FileManager.default.moveItem(atPath: input + "/seq1.h5", toPath: input + "/renamed.h5")
        let renamed = try Self.run(["batch", input, "-o", out, "--log-json"])
        try Self.expectCounts(renamed.stderr, ["done": 0, "skipped": 3, "failed": 2, "corpus_dumps": 3], "renamed")
        // New bytes, new content id: the changed file is analysed again and joins the corpus.
        let split = CLI.repository.appendingPathComponent("Tests/Fixtures/split_sample.py").path
        let tagged = try Self.run(
            ["/usr/bin/env", "python3", split, CLI.sample, input + "/more", "changed"], direct: true)
        try #require(tagged.status == 0, "\(tagged.stderr)")
        try FileManager.default.removeItem(atPath: input + "/more/seq1.h5")
        try FileManager.default.removeItem(atPath: input + "/more/seq2.h5")
        let changed = try Self.run(["batch", input, "-o", out, "--log-json"])
        try Self.expectCounts(changed.stderr, ["done": 1, "skipped": 3, "failed": 2, "corpus_dumps": 4], "changed")
        #expect(try Self.report(out + "/corpus/stats.json").dump.tokens == 452 + 192)
    }

    /// The test process holds OUT's lock as a running batch would (an flock on OUT/.lock, its pid inside): a
    /// batch on the same OUT names that pid and exits 1, without waiting or sleeping on either side.
    @Test func aSecondBatchOnTheSameOutputSaysSoAndExits() throws {
        let out = FitCLITests.directory("batch-lock")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let fd = open(out + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        try #require(flock(fd, LOCK_EX | LOCK_NB) == 0)
        let pid = "\(getpid())\n"
        try #require(pid.withCString { pwrite(fd, $0, strlen($0), 0) } == pid.utf8.count)
        let second = try Self.run(["batch", CLI.sample, "-o", out])
        #expect(second.status == 1)
        #expect(
            second.stderr == "kvstat batch: error: another kvstat batch (pid \(getpid())) is working on \(out); "
                + "wait for it or use another -o\n")
        #expect(!FileManager.default.fileExists(atPath: out + "/ledger.sqlite"))
    }

    @Test func unwritableOutputIsOneClearError() throws {
        let result = try Self.run(["batch", CLI.sample, "-o", "/proc/kvstat-cannot-write-here"])
        #expect(result.status == 1)
        #expect(
            result.stderr.contains("cannot create output folder /proc/kvstat-cannot-write-here"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    /// A dump that disappears before its turn fails alone ("no such file"); the others finish.
    @Test func dumpDeletedWhileTheBatchRuns() throws {
        let input = try Self.inputs(tags: ["b"])
        let out = FitCLITests.directory("batch-deleted")
        defer { for d in [input, out] { try? FileManager.default.removeItem(atPath: d) } }
        try "\(input)/seq0.h5\n\(input)/b/seq0.h5\n\(input)/b/seq1.h5\n\(input)/seq2.h5\n".write(
            toFile: input + "/list.txt", atomically: true, encoding: .utf8)
        let batch = Process()
        batch.executableURL = CLI.binary
        batch.arguments = ["batch", input + "/list.txt", "-o", out, "--log-json"]
        let err = Pipe()
        batch.standardError = err
        batch.standardOutput = FileHandle.nullDevice
        try batch.run()
        let stderr = PipeText(err.fileHandleForReading)
        // Delete the last dump of the sorted list once the first one is running (polled, 60 s at most).
        let deadline = Date().addingTimeInterval(60)
        func sawRunning() -> Bool { stderr.text.contains("\"event\":\"running\"") }
        while !sawRunning() {
            if !batch.isRunning {
                stderr.waitForEnd()
                if sawRunning() { break }
                Issue.record("the batch ended (exit \(batch.terminationStatus)) before any dump ran: \(stderr.text)")
                return
            }
            if Date() > deadline {
                kill(batch.processIdentifier, SIGKILL)
                batch.waitUntilExit()
                Issue.record("no dump was running after 60 s: \(stderr.text)")
                return
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        try FileManager.default.removeItem(atPath: input + "/seq2.h5")
        Self.waitForExit(batch, limit: 300, "the batch")
        stderr.waitForEnd()
        let text = stderr.text
        #expect(batch.terminationStatus == 2, "\(text)")
        try Self.expectCounts(text, ["done": 3, "failed": 1, "skipped": 0])
        let failed = try Self.events(text).filter { $0["event"] as? String == "failed" }
        try #require(failed.count == 1, "\(text)")
        #expect(failed[0]["path"] as? String == input + "/seq2.h5", "\(text)")
        #expect((failed[0]["message"] as? String ?? "").contains("seq2.h5: no such file"), "\(text)")
        #expect(try Self.temporaries(in: out).isEmpty)
    }

    /// SplitMix64: a small seeded generator, so that a run of the kill test can be replayed.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// kill -9 at random moments (seeded: the seed is printed, KVSTAT_KILL_SEED replays it), then reruns until
    /// one finishes: the corpus equals an uninterrupted run's and no temporary file or child process is left.
    @Test func killNineAtRandomMomentsThenResume() throws {
        let seed =
            ProcessInfo.processInfo.environment["KVSTAT_KILL_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        print("kill -9 test: seed \(seed) (replay the kill moments with KVSTAT_KILL_SEED=\(seed))")
        let context = "(KVSTAT_KILL_SEED=\(seed))"
        var generator = SeededGenerator(state: seed)
        let input = try Self.inputs(tags: ["b", "c"])
        let reference = FitCLITests.directory("batch-reference")
        let out = FitCLITests.directory("batch-killed")
        defer { for d in [input, reference, out] { try? FileManager.default.removeItem(atPath: d) } }
        let clean = try Self.run(["batch", input, "-o", reference, "--jobs", "2", "--quiet"])
        #expect(clean.status == 0, "\(clean.stderr)")
        var kills = 0
        var runs = 0
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
            Self.waitForExit(batch, limit: 300, "batch run \(runs) \(context)")
        }
        let finish = try Self.run(["batch", input, "-o", out, "--jobs", "2", "--log-json"])
        #expect(finish.status == 0, "\(finish.stderr) \(context)")
        try Self.expectCounts(finish.stderr, ["corpus_dumps": 9, "failed": 0], context)
        try Self.expectSameStatistics(
            try Self.report(out + "/corpus/stats.json"),
            try Self.report(reference + "/corpus/stats.json"), tolerance: 1e-9, context)
        #expect(try Self.temporaries(in: out).isEmpty, "\(context)")
        let children = try Self.run(["/usr/bin/pgrep", "-f", out], direct: true)
        #expect(children.stdout.isEmpty, "orphan processes: \(children.stdout) \(context)")
        #expect(kills == 10, "\(context)")
        print("kill -9 test: \(kills) of \(runs) runs killed mid-flight, then resumed \(context)")
    }

    /// A corpus state that no longer loads (here cut short) is reported and left as it is — never silently
    /// rebuilt over — and the batch exits 2; once it is moved away, the rerun rebuilds the same corpus.
    @Test func aCorpusStateThatDoesNotLoadIsReportedNotRebuilt() throws {
        let input = try Self.inputs()
        let out = FitCLITests.directory("batch-corpus-broken")
        let moved = FitCLITests.directory("broken-state") + ".h5"
        defer { for d in [input, out, moved] { try? FileManager.default.removeItem(atPath: d) } }
        let first = try Self.run(["batch", input, "-o", out, "--quiet"])
        try #require(first.status == 0, "\(first.stderr)")
        let state = out + "/corpus/state.h5"
        let statsPath = out + "/corpus/stats.json"
        let before = try Self.report(statsPath)
        let statsBytes = try Data(contentsOf: URL(fileURLWithPath: statsPath))
        let whole = try Data(contentsOf: URL(fileURLWithPath: state))
        let cut = whole.prefix(whole.count / 2)
        try cut.write(to: URL(fileURLWithPath: state))

        let broken = try Self.run(["batch", input, "-o", out, "--log-json"])
        #expect(broken.status == 2, "\(broken.stderr)")
        try Self.expectCounts(broken.stderr, ["done": 0, "skipped": 3, "failed": 0, "exit_code": 2])
        let error = try Self.summary(broken.stderr)["corpus_error"] as? String ?? ""
        #expect(error.hasPrefix(state + ": ") && error.contains("the corpus was not updated"), "\(broken.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: state)) == cut)
        #expect(try Data(contentsOf: URL(fileURLWithPath: statsPath)) == statsBytes)
        let plain = try Self.run(["batch", input, "-o", out])
        #expect(plain.status == 2 && plain.stderr.contains("\n  corpus failed: \(state): "), "\(plain.stderr)")

        try FileManager.default.moveItem(atPath: state, toPath: moved)
        let rebuilt = try Self.run(["batch", input, "-o", out, "--log-json"])
        #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
        try Self.expectCounts(rebuilt.stderr, ["skipped": 3, "corpus_dumps": 3, "exit_code": 0])
        #expect(try Self.summary(rebuilt.stderr)["corpus_error"] is NSNull)
        try Self.expectSameStatistics(try Self.report(statsPath), before, tolerance: 1e-9)
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
            _ = try? Self.run(["/usr/bin/umount", mountPoint], direct: true, limit: 60)
            for d in [input, mountPoint] { try? FileManager.default.removeItem(atPath: d) }
        }
        let mount = try Self.run(
            ["/usr/bin/mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mountPoint], direct: true,
            limit: 60)
        try #require(mount.status == 0, "cannot mount tmpfs: \(mount.stderr)")
        let result = try Self.run(["batch", input, "-o", mountPoint + "/out"])
        #expect(result.status == 1, "\(result.stderr)")
        let failures = result.stderr.split(separator: "\n").filter { $0.hasPrefix("kvstat batch: failed: ") }
        #expect(failures.count == 3, "\(result.stderr)")
        for line in failures {
            #expect(
                line.contains("/state.h5: No space left: it needs about ")
                    && line.hasSuffix("free (kvstat analyze exit 73)"), "\(line)")
        }
        #expect(try Self.temporaries(in: mountPoint + "/out").isEmpty)
        // Every dump failed: no output folder of a dump, whole or half-written.
        let entries = try FileManager.default.contentsOfDirectory(atPath: mountPoint + "/out")
        let dumps = entries.filter { !$0.hasPrefix(".") && !$0.hasPrefix("ledger") && $0 != "corpus" }
        #expect(dumps.isEmpty, "\(entries)")
    }

    /// The tools the Slurm test needs (scripts/slurm-array-test.sh checks the same list); when one is missing
    /// the test is skipped, and this says so loudly on stderr.
    static let missingSlurmTools: [String] = {
        let missing = ["slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel", "munged"].filter { tool in
            (try? run(["/usr/bin/which", tool], direct: true, limit: 30).status) != 0
        }
        if !missing.isEmpty {
            FileHandle.standardError.write(
                Data(
                    """
                    *** SKIPPED: slurmJobArrayEqualsTheSingleMachineBatch: \(missing.joined(separator: ", ")) not \
                    installed (scripts/setup.sh installs slurm-wlm and munge) ***\n
                    """.utf8))
        }
        return missing
    }()

    /// A 4-task Slurm job array (examples/slurm/kvstat-array.sbatch) on a real single-node Slurm, merged with
    /// `kvstat merge`, equals the single-machine batch. Skipped only when Slurm or munge is not installed;
    /// installed, daemons that do not start fail the test with the last lines of their logs.
    @Test(
        .enabled(
            if: BatchCLITests.missingSlurmTools.isEmpty,
            "Slurm (slurm-wlm) or munge is not installed: scripts/setup.sh installs them"))
    func slurmJobArrayEqualsTheSingleMachineBatch() throws {
        let input = try Self.inputs(tags: ["b"])
        let work = FitCLITests.directory("slurm")
        defer { for d in [input, work] { try? FileManager.default.removeItem(atPath: d) } }
        // The script limits its own waits (60 s for the node, SLURM_TEST_LIMIT for the array); this is the backstop.
        let script = CLI.repository.appendingPathComponent("scripts/slurm-array-test.sh").path
        let run = try Self.run([script, CLI.binary.path, input, work], direct: true, limit: 900)
        try #require(
            run.status == 0,
            "slurm-array-test.sh exit \(run.status) (77: a tool missing after all):\n\(run.stdout)\(run.stderr)")
        let array = try Self.report(work + "/array-corpus/stats.json")
        try Self.expectSameStatistics(array, try Self.report(work + "/single/corpus/stats.json"), tolerance: 1e-9)
        #expect(array.dump.tokens == 904)
    }

    // MARK: hygiene

    /// OUT inside the input folder: a rerun takes none of OUT's files (state files, outputs) for dumps, says how
    /// many it left out, and a file named inside OUT is refused.
    @Test func outputInsideTheInputFolderIsNeverAnInput() throws {
        let input = try Self.inputs()
        defer { try? FileManager.default.removeItem(atPath: input) }
        let out = input + "/out"
        let first = try Self.run(["batch", input, "-o", out, "--log-json"])
        #expect(first.status == 0, "\(first.stderr)")
        try Self.expectCounts(first.stderr, ["done": 3, "failed": 0, "ignored": 0])
        let marker = try Self.json(out + "/.kvstat")
        #expect(marker["command"] as? String == "batch")
        let id = try #require(try FileManager.default.contentsOfDirectory(atPath: out).first { $0.count == 16 })
        try FileManager.default.copyItem(atPath: "\(out)/\(id)/state.h5", toPath: input + "/copied-state.h5")
        let again = try Self.run(["batch", input, "-o", out, "--log-json"])
        #expect(again.status == 0, "\(again.stderr)")
        // 3 dumps' state.h5 and the corpus's inside OUT, and the copied state file.
        try Self.expectCounts(again.stderr, ["done": 0, "skipped": 3, "failed": 0, "ignored": 5])
        let plain = try Self.run(["batch", input, "-o", out])
        #expect(plain.stderr.contains("5 files kvstat wrote left out of the inputs"), "\(plain.stderr)")
        let named = try Self.run(["batch", "\(out)/\(id)/state.h5", "-o", out])
        #expect(named.status == 64, "\(named.stderr)")
        #expect(
            named.stderr.split(separator: "\n").count == 1
                && named.stderr.contains("state.h5: is inside the output folder"), "\(named.stderr)")
    }

    /// Pass-through arguments that would redirect or silence the children's outputs, name another input, or end
    /// the child's options (`--`) are usage errors at once (exit 64), before OUT is created.
    @Test(arguments: [
        ["--analyze-arg=-o", "--analyze-arg=/tmp/elsewhere"], ["--analyze-arg=--output=/tmp/elsewhere"],
        ["--analyze-arg=--save-state", "--analyze-arg=/tmp/s.h5"], ["--analyze-arg=--log-json"],
        ["--analyze-arg=--quiet"], ["--analyze-arg=--timings"], ["--analyze-arg=--force"], ["--analyze-arg=other.h5"],
        ["--fit", "--method pca -o /tmp/elsewhere"], ["--fit", "--quiet"], ["--fit", "--log-json"],
        ["--fit", "other.h5"], ["--analyze-arg=--dct-window", "--analyze-arg=1"], ["--fit", "--method svd"],
        ["--analyze-arg=--"], ["--fit", "--method pca --"],
    ])
    func passThroughArgumentsThatChangeOutputsAreRefused(arguments: [String]) throws {
        let out = FitCLITests.directory("batch-passthrough")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let result = try Self.run(["batch", CLI.sample, "-o", out] + arguments)
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
        let refused = try Self.run(["batch", input, "-o", out])
        #expect(refused.status == 1, "\(refused.stderr)")
        let expected =
            "kvstat batch: error: \(out): exists and holds files kvstat did not write; choose another -o, or --force\n"
        #expect(refused.stderr == expected)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["notes.md"])
        let forced = try Self.run(["batch", input, "-o", out, "--force", "--quiet"])
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
        let out = FitCLITests.directory("batch-fit")
        let whole = FitCLITests.directory("whole-fit")
        defer { for d in [input, out, whole] { try? FileManager.default.removeItem(atPath: d) } }
        let batch = try BatchCLITests.run([
            "batch", input, "-o", out, "--jobs", "2",
            "--fit", "--method pca --keep-ratio 0.25 --attention-queries 0",
        ])
        #expect(batch.status == 0, "\(batch.stderr)")
        let single = try BatchCLITests.run([
            "fit-lowrank", CLI.sample, "--method", "pca", "--keep-ratio", "0.25",
            "--attention-queries", "0", "-o", whole, "--quiet",
        ])
        #expect(single.status == 0, "\(single.stderr)")
        func manifest(_ path: String) throws -> FitReport {
            try BatchCLITests.decoder.decode(FitReport.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let corpus = try manifest(out + "/corpus/fit/manifest.json")
        let reference = try manifest(whole + "/manifest.json")
        #expect(corpus.method == "pca" && corpus.source.tokens == 452, "\(corpus.source)")
        let a = try #require(corpus.fit.overall["all"] ?? nil)
        let b = try #require(reference.fit.overall["all"] ?? nil)
        #expect(abs(a - b) <= 1e-5, "corpus fit \(a) vs whole-dump fit \(b)")
        let perDump = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.count == 16 }
        #expect(perDump.count == 3)
        for id in perDump {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(id)/fit/projections.safetensors"))
            #expect(try manifest("\(out)/\(id)/fit/manifest.json").method == "pca")
        }
    }
}
