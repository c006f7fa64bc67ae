// The SHA-256 of a dump's bytes, for provenance in manifests (analyze hashes on a background thread instead).
import FileDigest

extension Dump {
    /// The lowercase hex SHA-256 of the dump's bytes: the HDF5 or safetensors file's; for a folder of
    /// safetensors files, the SHA-256 of their bytes concatenated in byte order of their names (`sourceFiles`),
    /// which `cat $(ls folder/*.safetensors | LC_ALL=C sort) | sha256sum` reproduces. It reads the files by
    /// path, so it checks before and after that they are still the files that were opened (`checkUnchanged()`):
    /// a digest never describes files other than the ones whose tensors were read.
    public func sha256() throws(DumpError) -> String {
        try checkUnchanged()
        let digest: String
        do {
            digest = try SHA256.hex(ofFilesAt: sourceFiles)
        } catch {
            throw DumpError(.notReadable, "\(error)", file: path)
        }
        try checkUnchanged()
        return digest
    }
}
