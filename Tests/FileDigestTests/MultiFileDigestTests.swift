// The digest of several files is the digest of their bytes one after another (how a folder dump is hashed),
// checked against coreutils' sha256sum of the concatenated file (an independent implementation).
import Foundation
import Testing

@testable import FileDigest

@Suite struct MultiFileDigestTests {
    @Test func severalFilesHashAsTheirConcatenation() throws {
        let folder = NSTemporaryDirectory() + "kvstat-sha-many-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var all = Data()
        var paths: [String] = []
        for (index, size) in [0, 5, 100_003, 7].enumerated() {
            let bytes = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 * 31 + index) })
            let path = folder + "/\(index)"
            try bytes.write(to: URL(fileURLWithPath: path))
            paths.append(path)
            all += bytes
        }
        let joined = folder + "/joined"
        try all.write(to: URL(fileURLWithPath: joined))
        // Reads of 4 KiB, so that the 100,003-byte file ends in a partial read.
        #expect(try SHA256.hex(ofFilesAt: paths, chunkBytes: 4096) == sha256sum(joined))
        #expect(try SHA256.hex(ofFilesAt: [paths[2]]) == sha256sum(paths[2]))
        #expect(try SHA256.hex(ofFilesAt: paths) != SHA256.hex(ofFilesAt: paths.reversed()))
        #expect(throws: SHA256.ReadError.self) { try SHA256.hex(ofFilesAt: [paths[0], folder + "/missing"]) }
    }

    /// The hex digest coreutils' sha256sum prints for `path`.
    func sha256sum(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(String(decoding: output, as: UTF8.self).prefix(64))
    }
}
