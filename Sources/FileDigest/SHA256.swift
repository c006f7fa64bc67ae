// SHA-256 of a file's bytes (or of several files' bytes one after another), streamed in 4 MiB reads through
// OpenSSL (SHA-NI where the CPU has it): provenance for stats.json and artifacts, and content ids for batch jobs.
internal import CCrypto
import Foundation

/// SHA-256 digests of files.
public enum SHA256 {
    /// An error reading the file.
    public struct ReadError: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var reason: String
        public var description: String { "\(path): cannot hash file (\(reason))" }
    }

    /// The lowercase hex SHA-256 of the file at `path`, read in `chunkBytes` pieces into one reused buffer
    /// (memory stays at one piece; a fresh buffer per piece would cost a page fault per 4 KiB, as much system
    /// time as the hashing itself on a large file).
    public static func hex(ofFileAt path: String, chunkBytes: Int = 4 << 20) throws -> String {
        try hex(ofFilesAt: [path], chunkBytes: chunkBytes)
    }

    /// The lowercase hex SHA-256 of the bytes of the files at `paths` concatenated in the order given (a dump
    /// made of several files, such as a folder of safetensors files, hashes them in name order). One file
    /// gives that file's SHA-256; no file gives the digest of no bytes.
    public static func hex(ofFilesAt paths: [String], chunkBytes: Int = 4 << 20) throws -> String {
        guard let context = EVP_MD_CTX_new() else {
            throw ReadError(path: paths.first ?? "", reason: "OpenSSL could not allocate a digest")
        }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            throw ReadError(path: paths.first ?? "", reason: "OpenSSL could not start SHA-256")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 64)
        defer { buffer.deallocate() }
        for path in paths {
            try update(context, withFileAt: path, buffer: buffer, chunkBytes: chunkBytes)
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1 else {
            throw ReadError(path: paths.last ?? "", reason: "OpenSSL digest final failed")
        }
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    /// Feeds the bytes of the file at `path` into `context`, `chunkBytes` at a time through `buffer`.
    private static func update(
        _ context: OpaquePointer, withFileAt path: String, buffer: UnsafeMutableRawPointer, chunkBytes: Int
    ) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ReadError(path: path, reason: "cannot open it for reading (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        while true {
            let count = read(descriptor, buffer, chunkBytes)
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(path: path, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            guard EVP_DigestUpdate(context, buffer, count) == 1 else {
                throw ReadError(path: path, reason: "OpenSSL digest update failed")
            }
        }
    }
}
