// The SHA-256 of a dump file, for provenance in manifests (analyze hashes on a background thread instead).
import FileDigest

extension Dump {
    /// The lowercase hex SHA-256 of the dump file's bytes.
    public func sha256() throws(DumpError) -> String {
        do {
            return try SHA256.hex(ofFileAt: path)
        } catch {
            throw DumpError(.notReadable, "\(error)", file: path)
        }
    }
}
