// The SHA-256 of a dump file, for provenance in manifests (analyze hashes on a background thread instead).
import FileDigest

extension Dump {
    /// The lowercase hex SHA-256 of the dump file's bytes. It reads the file by path, so it checks before
    /// and after that the path still holds the file that was opened (`checkUnchanged()`): a digest never
    /// describes a file other than the one whose tensors were read.
    public func sha256() throws(DumpError) -> String {
        try checkUnchanged()
        let digest: String
        do {
            digest = try SHA256.hex(ofFileAt: path)
        } catch {
            throw DumpError(.notReadable, "\(error)", file: path)
        }
        try checkUnchanged()
        return digest
    }
}
