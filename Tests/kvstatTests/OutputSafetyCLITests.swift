// kvstat never writes over an input or a user's file, combines only things that fit, and ends a full disk
// with one error line and exit 73: each refusal is checked through the built binary for its exit code, its one
// stderr line, and inputs and user files left byte-identical (and nothing written).
import Foundation
import Testing

/// A scratch folder with a copy of the sample dump, and byte snapshots of files.
struct Scratch {
    let root: String
    var dump: String { root + "/d.h5" }

    init(_ name: String) throws {
        root = FitCLITests.directory(name)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLI.sample, toPath: root + "/d.h5")
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    func write(_ text: String, to name: String) throws {
        let path = root + "/" + name
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    /// The bytes of every file below `folder` (path → bytes).
    static func snapshot(_ folder: String) -> [String: Data] {
        var files: [String: Data] = [:]
        for name in (FileManager.default.subpaths(atPath: folder) ?? []) {
            if let data = FileManager.default.contents(atPath: folder + "/" + name) { files[name] = data }
        }
        return files
    }
}

/// Exit `status`, exactly one stderr line containing every one of `parts`.
func expectRefused(
    _ result: CLI.Result, status: Int32, _ parts: String..., sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == status, "\(result.stderr)", sourceLocation: sourceLocation)
    let lines = result.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
    for part in parts { #expect(result.stderr.contains(part), "\(result.stderr)", sourceLocation: sourceLocation) }
}

@Suite struct OutputSafetyCLITests {
    /// `--save-state` onto the dump (by its own name, or a hard link to it) is refused before any work.
    @Test func saveStateOverTheDumpIsRefused() throws {
        let s = try Scratch("over-dump")
        defer { s.remove() }
        let before = Scratch.snapshot(s.root)
        let same = try CLI.run(["analyze", s.dump, "--save-state", s.dump, "-o", s.root + "/out"])
        expectRefused(same, status: 73, "\(s.dump): is the dump this command reads")
        try FileManager.default.linkItem(atPath: s.dump, toPath: s.root + "/link.h5")
        let linked = try CLI.run(["analyze", s.dump, "--save-state", s.root + "/link.h5", "-o", s.root + "/out"])
        expectRefused(linked, status: 73, "link.h5: is the dump this command reads (\(s.dump))")
        let asFolder = try CLI.run(["analyze", s.dump, "-o", s.dump])
        expectRefused(asFolder, status: 73, "is the dump this command reads")
        var after = Scratch.snapshot(s.root)
        after["link.h5"] = nil
        #expect(after == before, "the dump changed or something was written")
    }

    /// fit-lowrank into the folder holding its input (its own projections.h5, or a state file in a user's
    /// folder) is refused and leaves the input as it was.
    @Test func fitLowrankNeverWritesOverItsInput() throws {
        let s = try Scratch("fit-own-input")
        defer { s.remove() }
        let fit = try CLI.run([
            "fit-lowrank", s.dump, "--layers", "0-1", "--attention-queries", "0", "-o", s.root + "/fit", "--quiet",
        ])
        #expect(fit.status == 0, "\(fit.stderr)")
        let fitted = Scratch.snapshot(s.root + "/fit")
        let again = try CLI.run(["fit-lowrank", s.root + "/fit/projections.h5", "-o", s.root + "/fit", "--force"])
        expectRefused(again, status: 73, "fit/projections.h5: is the dump this command reads")
        #expect(Scratch.snapshot(s.root + "/fit") == fitted)

        let state = try CLI.run([
            "analyze", s.dump, "--layers", "0-1", "--save-state", s.root + "/mine/state.h5", "-o", s.root + "/a",
            "--quiet",
        ])
        #expect(state.status == 0, "\(state.stderr)")
        try s.write("my notes\n", to: "mine/notes.md")
        let mine = Scratch.snapshot(s.root + "/mine")
        let intoState = try CLI.run(["fit-lowrank", s.root + "/mine/state.h5", "-o", s.root + "/mine"])
        expectRefused(
            intoState, status: 73, "mine: exists and holds files kvstat did not write; choose another -o, or --force")
        #expect(Scratch.snapshot(s.root + "/mine") == mine)
    }

    /// `report -o` never replaces the JSON it reads, nor a file that is not a kvstat page (without --force).
    @Test func reportNeverReplacesItsInputsOrAUsersFile() throws {
        let s = try Scratch("report-inputs")
        defer { s.remove() }
        let out = s.root + "/out"
        #expect(try CLI.run(["analyze", s.dump, "--layers", "0-1", "-o", out, "--quiet"]).status == 0)
        try s.write("<p>my page</p>\n", to: "page.html")
        let before = Scratch.snapshot(s.root)
        expectRefused(
            try CLI.run(["report", out, "-o", out + "/stats.json"]), status: 73,
            "out/stats.json: is a stats.json this command reads")
        expectRefused(
            try CLI.run(["report", out, "-o", out + "/stats.json", "--force"]), status: 73,
            "is a stats.json this command reads")
        expectRefused(
            try CLI.run(["report", out, "-o", s.root + "/page.html"]), status: 73,
            "page.html: exists and is not a kvstat report page; choose another -o path, or --force")
        expectRefused(try CLI.run(["report", out, "-o", out]), status: 73, "is a folder")
        #expect(Scratch.snapshot(s.root) == before)
        // A kvstat page is replaced; --force replaces the user's page.
        #expect(try CLI.run(["report", out]).status == 0)
        #expect(try CLI.run(["report", out, "-o", s.root + "/page.html", "--force"]).status == 0)
        #expect(try String(contentsOfFile: s.root + "/page.html", encoding: .utf8).contains("<title>kvstat report"))
    }

    /// An existing folder of the user's files is refused (and left byte-identical) unless --force; a new or
    /// empty folder is created and marked, and a marked folder is rewritten freely.
    @Test func outputFoldersOfTheUserAreRefused() throws {
        let s = try Scratch("user-folder")
        defer { s.remove() }
        for name in ["summary.md", "stats.json", "report.html"] {
            try s.write("the user's \(name)\n", to: "mine/\(name)")
        }
        let mine = Scratch.snapshot(s.root + "/mine")
        let common = ["--layers", "0-1", "--quiet"]
        let refused = try CLI.run(["analyze", s.dump, "-o", s.root + "/mine"] + common)
        expectRefused(
            refused, status: 73, "mine: exists and holds files kvstat did not write; choose another -o, or --force")
        #expect(Scratch.snapshot(s.root + "/mine") == mine)
        let merge = try CLI.run(["analyze", s.dump, "-o", s.root + "/a", "--save-state", s.root + "/a.h5"] + common)
        #expect(merge.status == 0)
        expectRefused(
            try CLI.run(["merge", s.root + "/a.h5", "-o", s.root + "/mine"]), status: 73,
            "holds files kvstat did not write")
        expectRefused(
            try CLI.run(["fit-lowrank", s.dump, "-o", s.root + "/mine"]), status: 73, "holds files kvstat did not write"
        )
        #expect(Scratch.snapshot(s.root + "/mine") == mine)

        // New: created and marked; rerun into it; empty: marked too.
        #expect(try CLI.run(["analyze", s.dump, "-o", s.root + "/new"] + common).status == 0)
        let marker = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.root + "/new/.kvstat")))
                as? [String: Any])
        #expect(
            marker["command"] as? String == "analyze" && marker["schema"] as? String == "kvstat.folder/1"
                && marker["kvstat_version"] != nil)
        #expect(try CLI.run(["analyze", s.dump, "-o", s.root + "/new"] + common).status == 0)
        try FileManager.default.createDirectory(atPath: s.root + "/empty", withIntermediateDirectories: true)
        #expect(try CLI.run(["analyze", s.dump, "-o", s.root + "/empty"] + common).status == 0)
        #expect(FileManager.default.fileExists(atPath: s.root + "/empty/.kvstat"))
        // --force writes into the user's folder (replacing the names kvstat writes) and does not mark it.
        #expect(try CLI.run(["analyze", s.dump, "-o", s.root + "/mine", "--force"] + common).status == 0)
        #expect(!FileManager.default.fileExists(atPath: s.root + "/mine/.kvstat"))
    }

    /// `--save-state FILE` replaces only a kvstat state file (or anything with --force), never an input.
    @Test func saveStateReplacesOnlyStateFiles() throws {
        let s = try Scratch("save-state")
        defer { s.remove() }
        let common = ["--layers", "0-1", "--quiet", "-o", s.root + "/out"]
        try s.write("not a state\n", to: "notes.h5")
        expectRefused(
            try CLI.run(["analyze", s.dump, "--save-state", s.root + "/notes.h5"] + common), status: 73,
            "notes.h5: exists and is not a kvstat state file; choose another --save-state path, or --force")
        #expect(try String(contentsOfFile: s.root + "/notes.h5", encoding: .utf8) == "not a state\n")
        #expect(!FileManager.default.fileExists(atPath: s.root + "/out"))
        #expect(try CLI.run(["analyze", s.dump, "--save-state", s.root + "/s.h5"] + common).status == 0)
        #expect(try CLI.run(["analyze", s.dump, "--save-state", s.root + "/s.h5"] + common).status == 0)
        #expect(try CLI.run(["analyze", s.dump, "--save-state", s.root + "/notes.h5", "--force"] + common).status == 0)
        let merged = try CLI.run(["merge", s.root + "/s.h5", "-o", s.root + "/m", "--save-state", s.root + "/s.h5"])
        expectRefused(merged, status: 73, "s.h5: is a state file this command reads")
        expectRefused(
            try CLI.run([
                "analyze", s.dump, "--save-state", s.root + "/out/stats.json", "-o", s.root + "/out", "--force",
            ]),
            status: 73, "is also one of the files written into")
    }

    // MARK: combining things that do not fit

    /// Writes `name` into `folder`: the sample with only the first `heads` kv heads (queries dropped).
    static func heads(_ heads: Int, _ folder: String, _ name: String) throws -> String {
        let script = """
            import sys, h5py
            src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
            with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
                for k, v in f.attrs.items(): g.attrs[k] = v
                g["attention_mask"] = f["attention_mask"][()]
                for layer in f["layers"]:
                    for kind in ("key", "value"):
                        g[f"layers/{layer}/{kind}"] = f[f"layers/{layer}/{kind}"][:, :n]
            """
        let path = folder + "/" + name
        let run = try CLI.run(["/usr/bin/env", "python3", "-c", script, CLI.sample, path, String(heads)], direct: true)
        try #require(run.status == 0, "\(run.stderr)")
        return path
    }

    /// Projections fitted on 2 kv heads applied to a 4-head dump: refused (exit 65) naming both, with the
    /// recorded model and, for an older artifact without it, by the channels its projections cover.
    @Test func evalRefusesADumpOfAnotherModel() throws {
        let s = try Scratch("eval-model")
        defer { s.remove() }
        let two = try Self.heads(2, s.root, "two.h5")
        let four = try Self.heads(4, s.root, "four.h5")
        for granularity in ["layer", "head"] {
            let fit = s.root + "/fit-" + granularity
            let run = try CLI.run([
                "fit-lowrank", two, "--layers", "0-1", "--granularity", granularity, "-o", fit, "--quiet",
            ])
            #expect(run.status == 0, "\(run.stderr)")
            let manifest = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fit + "/manifest.json")))
                    as? [String: Any])
            let model = try #require(manifest["model"] as? [String: Any])
            #expect(model["kv_heads"] as? Int == 2 && model["head_dim"] as? Int == 32 && model["layers"] as? Int == 6)
            #expect(model["channels"] as? [String: Int] == ["key": 64, "value": 64])
            #expect(try CLI.run(["eval", "--artifact", fit, two]).status == 0)
            let eval = try CLI.run(["eval", "--artifact", fit, four])
            expectRefused(eval, status: 65, "four.h5: is a dump of another model", "\(fit)/projections.h5")
            #expect(eval.stdout.isEmpty)
            // An artifact written before `model` was recorded: the channels its projections cover decide.
            let strip = """
                import sys, json, h5py
                with h5py.File(sys.argv[1], "r+") as h:
                    m = json.loads(h.attrs["manifest"]); del m["model"]; h.attrs["manifest"] = json.dumps(m)
                """
            let stripped = try CLI.run(["/usr/bin/env", "python3", "-c", strip, fit + "/projections.h5"], direct: true)
            try #require(stripped.status == 0, "\(stripped.stderr)")
            expectRefused(
                try CLI.run(["eval", "--artifact", fit, four]), status: 65, "four.h5: has 128 key channels per layer",
                "\(fit)/projections.h5")
            #expect(try CLI.run(["eval", "--artifact", fit, two]).status == 0)
        }
        let other = try CLI.run(["fit-lowrank", two, "--eval", four, "--layers", "0", "-o", s.root + "/x"])
        expectRefused(other, status: 65, "four.h5: is not a dump of the same model as \(two)")
    }

    /// States that hold the same tokens are refused (both files named); disjoint parts merge.
    @Test func mergeRefusesStatesThatOverlap() throws {
        let s = try Scratch("merge-overlap")
        defer { s.remove() }
        func part(_ name: String, _ selection: [String]) throws -> String {
            let path = s.root + "/" + name + ".h5"
            let run = try CLI.run(
                ["analyze", s.dump, "--layers", "0-1", "--quiet", "-o", s.root + "/o-" + name, "--save-state", path]
                    + selection)
            #expect(run.status == 0, "\(run.stderr)")
            return path
        }
        let a = try part("a", ["--sequences", "0-1"])
        let b = try part("b", ["--sequences", "1-2"])
        let c = try part("c", ["--sequences", "2"])
        let head = try part("head", ["--tokens", "0:100"])
        let tail = try part("tail", ["--tokens", "100:"])
        let whole = try part("whole", [])
        expectRefused(
            try CLI.run(["merge", a, a, "-o", s.root + "/m1"]), status: 65, "\(a): holds tokens \(a) already holds",
            "twice")
        expectRefused(
            try CLI.run(["merge", a, b, "-o", s.root + "/m2"]), status: 65, "\(b): holds tokens \(a) already holds")
        expectRefused(
            try CLI.run(["merge", whole, c, "-o", s.root + "/m3"]), status: 65,
            "\(c): holds tokens \(whole) already holds")
        #expect(
            !FileManager.default.fileExists(atPath: s.root + "/m1")
                && !FileManager.default.fileExists(atPath: s.root + "/m2"))
        // (a + c) saved, then + a again: the saved state remembers its parts.
        let ac = try CLI.run(["merge", a, c, "-o", s.root + "/ac", "--save-state", s.root + "/ac.h5", "--quiet"])
        #expect(ac.status == 0, "\(ac.stderr)")
        expectRefused(
            try CLI.run(["merge", s.root + "/ac.h5", a, "-o", s.root + "/m4"]), status: 65,
            "\(a): holds tokens \(s.root)/ac.h5 already holds")
        let tokens = try CLI.run(["merge", head, tail, "-o", s.root + "/ht", "--quiet"])
        #expect(tokens.status == 0, "\(tokens.stderr)")
        let merged = try BatchCLITests.stats(s.root + "/ht/stats.json")
        #expect((merged["dump"] as? [String: Any])?["tokens"] as? Int == 452)
    }

    /// States of different layers: refused, naming both files.
    @Test func mergeOfDifferentStatesNamesBothFiles() throws {
        let s = try Scratch("merge-mismatch")
        defer { s.remove() }
        for (name, layers) in [("a", "0-1"), ("b", "0-2")] {
            let run = try CLI.run([
                "analyze", s.dump, "--layers", layers, "--sequences", name == "a" ? "0" : "1", "--quiet",
                "-o", s.root + "/o" + name, "--save-state", s.root + "/\(name).h5",
            ])
            #expect(run.status == 0, "\(run.stderr)")
        }
        expectRefused(
            try CLI.run(["merge", s.root + "/a.h5", s.root + "/b.h5", "-o", s.root + "/m"]), status: 65,
            "\(s.root)/b.h5: cannot be merged with \(s.root)/a.h5")
    }

    // MARK: a full disk

    static let canMount: Bool =
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/mount")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/cc")

    /// A state larger than a 2 MiB tmpfs, past the free-space check (an LD_PRELOAD statvfs that reports a huge
    /// disk), so the write itself meets ENOSPC: exit 73 (never a signal), one line, nothing left behind. Before
    /// the in-memory HDF5 write, libhdf5 1.10 crashed at exit here (signal 11).
    @Test(.enabled(if: OutputSafetyCLITests.canMount, "needs root (tmpfs) and cc"))
    func fullDiskDuringTheWriteIsExit73() throws {
        let s = try Scratch("full-disk")
        let mountPoint = s.root + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer {
            _ = try? CLI.run(["/usr/bin/umount", mountPoint], direct: true)
            s.remove()
        }
        let source = """
            #define _LARGEFILE64_SOURCE
            #include <sys/statvfs.h>
            #include <string.h>
            static void fill(unsigned long *bsize, unsigned long *frsize) { *bsize = 4096; *frsize = 4096; }
            int statvfs(const char *p, struct statvfs *b) {
                (void)p; memset(b, 0, sizeof *b); fill(&b->f_bsize, &b->f_frsize);
                b->f_blocks = b->f_bfree = b->f_bavail = 1UL << 30; return 0; }
            int statvfs64(const char *p, struct statvfs64 *b) {
                (void)p; memset(b, 0, sizeof *b); fill(&b->f_bsize, &b->f_frsize);
                b->f_blocks = b->f_bfree = b->f_bavail = 1UL << 30; return 0; }
            """
        try source.write(toFile: s.root + "/fakevfs.c", atomically: true, encoding: .utf8)
        let cc = try CLI.run(
            ["/usr/bin/cc", "-shared", "-fPIC", "-o", s.root + "/fakevfs.so", s.root + "/fakevfs.c"], direct: true)
        try #require(cc.status == 0, "\(cc.stderr)")
        let mount = try CLI.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint], direct: true)
        try #require(mount.status == 0, "cannot mount tmpfs: \(mount.stderr)")

        let state = mountPoint + "/s.h5"
        let run = try CLI.run(
            [
                "/usr/bin/env", "LD_PRELOAD=\(s.root)/fakevfs.so", CLI.binary.path, "analyze", s.dump, "--quiet",
                "-o", s.root + "/out", "--save-state", state,
            ], direct: true)
        #expect(run.status == 73, "\(run.stderr)")
        #expect(run.stderr == "kvstat: error: \(state): cannot write state file (No space left on device)\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: mountPoint).isEmpty, "leftovers on the full disk")
        #expect(!FileManager.default.fileExists(atPath: s.root + "/out"))

        // Without the fake statvfs, the free-space check refuses it up front, with the sizes.
        let checked = try CLI.run(["analyze", s.dump, "--quiet", "-o", s.root + "/out", "--save-state", state])
        #expect(checked.status == 73, "\(checked.stderr)")
        #expect(
            checked.stderr.hasPrefix("kvstat: error: \(state): No space left: it needs about "), "\(checked.stderr)")
        #expect(checked.stderr.split(separator: "\n").count == 1)
        // Outputs larger than the disk (no HDF5): one line, exit 73, no temporary file left.
        let outputs = try CLI.run(
            [
                "/usr/bin/env", "LD_PRELOAD=\(s.root)/fakevfs.so", CLI.binary.path, "fit-lowrank", s.dump,
                "--layers", "0-5", "--keep-ratio", "1", "--attention-queries", "0", "-o", mountPoint + "/fit",
                "--quiet",
            ],
            direct: true)
        #expect(outputs.status == 73, "\(outputs.stderr)")
        #expect(
            outputs.stderr.hasSuffix("(No space left on device)\n") && outputs.stderr.split(separator: "\n").count == 1,
            "\(outputs.stderr)")
        #expect(BatchCLITests.leftovers(mountPoint).isEmpty && BatchCLITests.leftovers(mountPoint + "/fit").isEmpty)
    }
}
