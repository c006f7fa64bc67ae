// Every failure a user can provoke ends as one stderr line and a documented exit code: ArgumentParser's own
// usage errors, inputs that are not regular files, and libhdf5 crashing on a corrupt file's metadata.
import Foundation
import Testing

@Suite struct ErrorLineCLITests {
    static func lines(_ text: String) -> [Substring] { text.split(separator: "\n").filter { !$0.isEmpty } }

    /// Parsing errors: one line ending with the help to read, exit 64 (not ArgumentParser's three lines).
    @Test(arguments: [
        ["analyze", CLI.sample, "--outlier-factor", "inf"], ["analyze"], ["analyze", CLI.sample, "--bogus"],
        ["no-such-command"], ["fit-lowrank", CLI.sample, "--keep-ratio", "nan"],
    ])
    func usageErrorsAreOneLine(arguments: [String]) throws {
        let result = try CLI.run(arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        let lines = Self.lines(result.stderr)
        #expect(
            lines.count == 1 && lines[0].hasPrefix("kvstat: error: ") && lines[0].contains("--help')"),
            "\(result.stderr)")
    }

    @Test func helpStillPrintsInFull() throws {
        let result = try CLI.run(["analyze", "--help"])
        #expect(result.status == 0 && result.stdout.contains("OVERVIEW:") && result.stdout.contains("--outlier-factor"))
    }

    /// A FIFO (or a device) would block libhdf5's read forever: refused at once, exit 66.
    @Test func aFIFOIsRefusedWithoutBeingRead() throws {
        let directory = FitCLITests.directory("fifo")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fifo = directory + "/pipe.h5"
        #expect(mkfifo(fifo, 0o644) == 0)
        for arguments in [
            ["inspect", fifo], ["analyze", fifo, "-o", directory + "/out"], ["inspect", CLI.sample, "--layout", fifo],
        ] {
            let result = try CLI.run(arguments)
            #expect(result.status == 66, "\(arguments): \(result.stderr)")
            #expect(
                Self.lines(result.stderr).count == 1 && result.stderr.contains("not a regular file"), "\(result.stderr)"
            )
        }
    }

    /// One flipped bit in an attribute's stored size makes libhdf5 1.10 fault inside memcpy (found by
    /// Tests/Faults/fuzz.py, seed 20413): the crash guard turns it into one line and exit 65.
    @Test func aCrashInsideLibHDF5IsACorruptFileError() throws {
        let directory = FitCLITests.directory("hdf5-crash")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: CLI.fixture("axes_attr_bthd.h5")))
        bytes[2918] |= 0x80
        let path = directory + "/corrupt.h5"
        try bytes.write(to: URL(fileURLWithPath: path))
        for arguments in [["inspect", path], ["analyze", path, "-o", directory + "/out", "--quiet"]] {
            let result = try CLI.run(arguments)
            #expect(result.status == 65, "\(arguments): \(result.stderr)")
            let lines = Self.lines(result.stderr)
            #expect(lines.count == 1 && lines[0].hasPrefix("kvstat: error: \(path): "), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/out/stats.json"))
        }
    }
}
