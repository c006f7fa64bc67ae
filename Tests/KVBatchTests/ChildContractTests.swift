// The batch child contract on its own: the typed command lines (exact arrays, and every option spelling present
// in the built binary's --help), the one launcher (environment, stderr log, error line, crashes), the
// die-with-parent variable read by the real CLI under the same name, and the corpus step's reported failures.
// Children are stand-in shell scripts (BatchHygieneTests.child), except where the real binary is the point.
import Foundation
import Testing

@testable import KVBatch

@Suite struct ChildContractTests {
    /// The built kvstat executable (as Tests/kvstatTests/CLITests.swift finds it; KVSTAT_BIN overrides).
    static let binary: String = {
        if let override = ProcessInfo.processInfo.environment["KVSTAT_BIN"] { return override }
        var directory = Bundle.main.bundleURL
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("kvstat")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            directory = directory.deletingLastPathComponent()
        }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("kvstat").path
    }()

    /// Runs `executable arguments` with `environment` added; (status, stdout, stderr).
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:]
    ) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: stdout, as: UTF8.self),
            String(decoding: stderr, as: UTF8.self)
        )
    }

    @Test func theChildCommandLinesAreExact() {
        let analyze = AnalyzeArguments(
            dump: "-odd name.h5", output: "/o/id.tmp-7", saveState: "/o/id.tmp-7/state.h5",
            threads: 3, passThrough: ["--dct-window", "64"])
        #expect(
            analyze.commandLine == [
                "analyze", "--output=/o/id.tmp-7", "--save-state=/o/id.tmp-7/state.h5", "--quiet", "--threads=3",
                "--dct-window", "64", "--", "-odd name.h5",
            ])
        var noThreads = analyze
        noThreads.threads = nil
        noThreads.quiet = false
        #expect(
            noThreads.commandLine == [
                "analyze", "--output=/o/id.tmp-7", "--save-state=/o/id.tmp-7/state.h5", "--dct-window", "64", "--",
                "-odd name.h5",
            ])
        let fit = FitLowrankArguments(
            source: "/o/corpus/state.h5", output: "/o/corpus/fit.tmp-7",
            passThrough: ["--method", "pca"])
        #expect(
            fit.commandLine == [
                "fit-lowrank", "--output=/o/corpus/fit.tmp-7", "--quiet", "--method", "pca", "--", "/o/corpus/state.h5",
            ])
    }

    /// Every option the batch gives its children is one of the built binary's options, by its whole name.
    @Test(arguments: [
        (AnalyzeArguments.subcommand, AnalyzeArguments.Option.all),
        (FitLowrankArguments.subcommand, FitLowrankArguments.Option.all),
    ])
    func everyOptionTheBatchSetsIsInTheChildsHelp(subcommand: String, options: [String]) throws {
        let help = try Self.run(Self.binary, [subcommand, "--help"])
        try #require(help.status == 0, "\(Self.binary) \(subcommand) --help: \(help.stderr)")
        let words = Set(help.stdout.split { !($0.isLetter || $0.isNumber || $0 == "-") }.map(String.init))
        for option in options {
            let found = words.contains(option)
            #expect(found, "\(option) is not an option of kvstat \(subcommand): \(help.stdout)")
        }
    }

    /// The CLI reads the die-with-parent variable under the launcher's name: a child whose parent is not the
    /// process named stops at once (exit 70, nothing printed); named correctly it runs.
    @Test func theCLIReadsTheDieWithParentVariable() throws {
        let orphan = try Self.run(Self.binary, ["--version"], environment: [ChildEnvironment.dieWithParent: "1"])
        #expect(orphan.status == 70 && orphan.stdout.isEmpty, "\(orphan)")
        let child = try Self.run(
            Self.binary, ["--version"],
            environment: [ChildEnvironment.dieWithParent: String(getpid())])
        #expect(child.status == 0 && !child.stdout.isEmpty, "\(child)")
    }

    /// A stand-in child run through the launcher: (its failure, the arguments it got, its environment variable).
    static func launch(
        _ body: String
    ) throws
        -> (failure: String?, arguments: String, variable: String, logLeft: Bool)
    {
        let folder = NSTemporaryDirectory() + "kvbatch-launch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let script = try BatchHygieneTests.child(
            """
            echo "$@" > "\(folder)/arguments"
            printf '%s' "$\(ChildEnvironment.dieWithParent)" > "\(folder)/variable"
            \(body)
            """)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let arguments = FitLowrankArguments(source: "/s.h5", output: "/fit", passThrough: [])
        // Exec of a just-written script can fail with ETXTBSY while another test's fork still holds its write
        // descriptor (a race of the test process, not of kvstat, whose executable is never being written): retried.
        var failure = KVStatChild(executable: script).run(arguments, log: folder + "/child.log")
        for _ in 0..<5 where failure?.message.hasPrefix("cannot start") == true {
            usleep(200_000)
            failure = KVStatChild(executable: script).run(arguments, log: folder + "/child.log")
        }
        func read(_ name: String) -> String {
            (try? String(contentsOfFile: "\(folder)/\(name)", encoding: .utf8)) ?? ""
        }
        let logLeft = FileManager.default.fileExists(atPath: folder + "/child.log")
        return (failure?.message, read("arguments"), read("variable"), logLeft)
    }

    @Test func theLauncherSetsTheVariableCapturesTheErrorAndSeesCrashes() throws {
        let ok = try Self.launch("echo 'kvstat: error: not shown' >&2; exit 0")
        #expect(ok.failure == nil)
        #expect(ok.arguments == "fit-lowrank --output=/fit --quiet -- /s.h5\n")
        #expect(ok.variable == String(getpid()))
        #expect(!ok.logLeft)
        let failed = try Self.launch("echo 'kvstat: error: /s.h5: boom' >&2; echo 'later noise' >&2; exit 65")
        #expect(failed.failure == "/s.h5: boom (kvstat fit-lowrank exit 65)")
        #expect(!failed.logLeft)
        let crashed = try Self.launch("kill -SEGV $$")
        #expect(crashed.failure == "kvstat fit-lowrank crashed (signal \(SIGSEGV))")
        let silent = try Self.launch("exit 3")
        #expect(silent.failure == "no message (kvstat fit-lowrank exit 3)")
    }

    @Test func aMissingExecutableFailsTheDumpNotTheBatch() throws {
        let root = try BatchHygieneTests.folder()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var options = BatchOptions(inputs: [root + "/x.h5"], output: root + "/batch-out", executable: root + "/nope")
        options.quiet = true
        let summary = try BatchRunner(options).run()
        #expect(summary.failed.map(\.message) == ["cannot start \(root)/nope: it is not an executable file"])
        #expect(summary.exitCode == 1)
    }

    /// A corpus state that exists but does not load is reported (exit 2) and left as it is, never rebuilt over;
    /// a finished dump without a state file is a note, not silently skipped.
    @Test func aCorpusStateThatDoesNotLoadIsReportedAndKept() throws {
        let root = try BatchHygieneTests.folder()
        let stats = try BatchHygieneTests.statsFile(tokens: 452)
        let script = try BatchHygieneTests.child(#"mkdir -p "$out"; cp "\#(stats)" "$out/stats.json"; exit 0"#)
        defer { for path in [root, stats, script] { try? FileManager.default.removeItem(atPath: path) } }
        let out = root + "/batch-out"
        var options = BatchOptions(inputs: [root + "/x.h5"], output: out, executable: script)
        options.quiet = true

        let first = try BatchRunner(options).run()
        #expect(first.done == 1 && first.exitCode == 0 && first.corpusFailure == nil)
        #expect(
            first.corpusNotes.count == 1
                && first.corpusNotes[0].hasPrefix("\(root)/x.h5: not merged into the corpus: its state file ")
                && first.corpusNotes[0].hasSuffix("/state.h5 is missing"), "\(first.corpusNotes)")

        let broken = Data("not a state file".utf8)
        try FileManager.default.createDirectory(atPath: out + "/corpus", withIntermediateDirectories: true)
        try broken.write(to: URL(fileURLWithPath: out + "/corpus/state.h5"))
        let second = try BatchRunner(options).run()
        #expect(second.skipped == 1 && second.failed.isEmpty)
        let failure = try #require(second.corpusFailure)
        #expect(failure.path == out + "/corpus/state.h5")
        #expect(failure.message.contains("the corpus was not updated and the file was left as it is"), "\(failure)")
        #expect(second.exitCode == 2)
        #expect(FileManager.default.contents(atPath: out + "/corpus/state.h5") == broken)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out + "/corpus") == ["state.h5"])
    }
}
