// SHA-256 of files against known digests (FIPS 180-2 examples) and against Python's hashlib.
import Foundation
import Testing

@testable import FileDigest

@Suite struct SHA256Tests {
    func temporaryFile(_ data: Data) throws -> String {
        let path = NSTemporaryDirectory() + "kvstat-sha-\(UUID().uuidString)"
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func knownDigests() throws {
        let empty = try temporaryFile(Data())
        let abc = try temporaryFile(Data("abc".utf8))
        defer {
            unlink(empty)
            unlink(abc)
        }
        #expect(try SHA256.hex(ofFileAt: empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try SHA256.hex(ofFileAt: abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// A file spanning several read pieces hashes as Python's hashlib does.
    @Test func multiplePiecesMatchHashlib() throws {
        var bytes = [UInt8](repeating: 0, count: 100_003)
        for i in bytes.indices { bytes[i] = UInt8((i * 7919) & 0xFF) }
        let path = try temporaryFile(Data(bytes))
        defer { unlink(path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
            path,
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let expected = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try SHA256.hex(ofFileAt: path, chunkBytes: 4096) == expected)
    }

    @Test func missingFileIsAnError() {
        #expect(throws: SHA256.ReadError.self) { try SHA256.hex(ofFileAt: "/nonexistent/kvstat-missing") }
    }
}
