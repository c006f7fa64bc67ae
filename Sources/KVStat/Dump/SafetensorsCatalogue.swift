// Presenting safetensors files as an HDF5 dump. A safetensors tensor is contiguous little-endian raw data at an
// offset of its file — exactly what HDF5 external storage (`H5Pset_external`) describes — so the catalogue is an
// HDF5 file built in memory with one externally stored dataset per tensor, opened read-only. Everything that
// reads a dump (layout detection, validation, padding, TensorReader, inspect) then works on it unchanged, and
// tensor bytes are read by libhdf5 straight from the safetensors files with `read(2)`, in token blocks like any
// contiguous dataset, so memory stays bounded.
//
// Reads go through read(2), not mmap: a file shortened during a run cannot raise SIGBUS. libhdf5 zero-fills an
// external read that ends early, so a file shortened *before* opening is refused by the header check (its size
// must be 8 + N + the last tensor's end), and one shortened *during* a run is caught by the size check of
// `Dump.checkUnchanged()` before any result is written (exit 75).
import Foundation
import HDF5Kit

enum SafetensorsCatalogue {
    /// The one tensor vLLM's example KV connector (SharedStorageConnector) writes per layer file.
    static let vllmTensor = "kv_cache"
    /// `__metadata__` keys read as the number of key/value heads of a merged `kv_cache` channel axis.
    static let headCountKeys = ["num_kv_heads", "kv_heads", "num_key_value_heads"]

    /// One dataset of the catalogue.
    struct Entry: Equatable {
        /// Path in the catalogue: `/<tensor name>` for a single file, `/<file stem>/<tensor name>` in a folder;
        /// a `kv_cache` becomes `…/key` and `…/value`.
        var datasetPath: String
        var element: StoredElement
        /// Stored as uint16 with `dtype = "bfloat16"` (how kvstat reads bfloat16 from HDF5).
        var bfloat16: Bool
        var shape: [Int]
        /// The safetensors file, as an absolute path (libhdf5 opens it for each read), and the byte range.
        var file: String
        var offset: Int
        var bytes: Int
        /// An `axes` attribute (`kv_cache` halves: "tc" or "thd") and a `heads` attribute (for "tc").
        var axes: String?
        var heads: Int?
        /// The file as given and the tensor, for messages.
        var source: String
        var tensor: String
    }

    /// Opens the catalogue of the safetensors `files` (as given; one file, or a folder's files in name order),
    /// read-only, labelled `label` (the user's path) in messages. Returns it with the size of its in-memory image.
    static func open(files: [String], inFolder: Bool, label: String) throws(DumpError) -> (HDF5File, Int) {
        var headers: [SafetensorsHeader] = []
        for file in files { headers.append(try SafetensorsHeader.read(file)) }
        let entries = try plan(headers, inFolder: inFolder)
        var attributes: [String: String] = [:]
        for header in headers {
            attributes.merge(header.metadata) { first, _ in first }
        }
        do {
            let image = try HDF5MemoryImage.build(name: imageName(label)) { file in
                let root = try file.root()
                for entry in entries { try create(entry, in: root) }
                // Provenance only: a name HDF5 cannot take as an attribute is left out.
                for (name, value) in attributes.sorted(by: { $0.key < $1.key }) { try? root.setAttribute(name, value) }
            }
            return (try HDF5File.open(image: image, label: label), image.count)
        } catch let error as DumpError {
            throw error
        } catch let error as HDF5Error {
            throw DumpError(
                .notReadable, "cannot describe the safetensors tensors to libhdf5 (\(error.message))", file: label,
                dataset: error.object, cause: error.cause)
        } catch {
            throw DumpError(.notReadable, "cannot describe the safetensors tensors to libhdf5 (\(error))", file: label)
        }
    }

    /// A name for the in-memory file that no file on disk has: libhdf5 1.10's H5Fcreate first tries to open an
    /// existing file of that name (read-write, and the core driver then reads all of it into memory), so the
    /// user's path itself must not be used.
    static func imageName(_ label: String) -> String {
        let name = label + " (safetensors catalogue, in memory)"
        var status = stat()
        return lstat(name, &status) == 0 ? "/proc/self/kvstat-safetensors-catalogue-\(UUID().uuidString)" : name
    }

    /// Creates `entry`'s dataset and attributes; a name HDF5 refuses is an error naming the file and tensor.
    private static func create(_ entry: Entry, in root: HDF5Group) throws {
        do {
            let dataset = try root.createExternalDataset(
                entry.datasetPath, element: entry.element, shape: entry.shape, externalFile: entry.file,
                offset: entry.offset, bytes: entry.bytes)
            if entry.bfloat16 { try dataset.setAttribute("dtype", "bfloat16") }
            if let axes = entry.axes { try dataset.setAttribute("axes", axes) }
            if let heads = entry.heads { try dataset.setAttribute("heads", [Double(heads)]) }
        } catch let error as HDF5Error {
            throw DumpError(
                .badData,
                "tensor name cannot be an HDF5 dataset path '\(entry.datasetPath)' (\(error.message); is another "
                    + "tensor named like a folder of it?)", file: entry.source, dataset: entry.tensor,
                cause: error.cause)
        }
    }

    /// The datasets describing `headers`' tensors (see `Entry`). A `kv_cache` tensor is vLLM's [2, tokens,
    /// kv_heads × head_dim] (or [2, tokens, heads, head_dim]): its first half is the keys and its second the
    /// values, each contiguous. An MLA latent cache [tokens, latent] has no keys and values to analyse and is
    /// refused.
    static func plan(_ headers: [SafetensorsHeader], inFolder: Bool) throws(DumpError) -> [Entry] {
        var entries: [Entry] = []
        for header in headers {
            let file = absolute(header.path)
            let stem =
                inFolder ? String(((header.path as NSString).lastPathComponent).dropLast(".safetensors".count)) : ""
            func path(_ name: String) -> String { inFolder ? "/\(stem)/\(name)" : "/\(name)" }
            for tensor in header.tensors {
                let element = externalElement(tensor.dtype)
                let base = Entry(
                    datasetPath: path(tensor.name), element: element, bfloat16: tensor.dtype == .bfloat16,
                    shape: tensor.shape, file: file, offset: header.dataOffset + tensor.begin,
                    bytes: tensor.end - tensor.begin, axes: nil, heads: nil, source: header.path, tensor: tensor.name)
                guard tensor.name == vllmTensor else {
                    entries.append(base)
                    continue
                }
                let halves = try splitKVCache(tensor, header: header)
                for (index, kind) in ["key", "value"].enumerated() {
                    var half = base
                    half.datasetPath = path(kind)
                    half.shape = Array(tensor.shape.dropFirst())
                    half.bytes = base.bytes / 2
                    half.offset = base.offset + index * half.bytes
                    (half.axes, half.heads) = halves
                    entries.append(half)
                }
            }
        }
        return entries
    }

    /// The axes and head count of the halves of vLLM's `kv_cache`, or the error for a shape that is not one.
    private static func splitKVCache(
        _ tensor: SafetensorsTensor, header: SafetensorsHeader
    ) throws(DumpError) -> (String, Int?) {
        let shape = tensor.shape
        if shape.count == 2 {
            throw DumpError(
                .badData,
                "holds an MLA latent cache (kv_cache of shape \(shape) = [tokens, latent], no separate keys and "
                    + "values): kvstat analyses keys and values, which this cache does not store",
                file: header.path, dataset: tensor.name)
        }
        guard shape.count == 3 || shape.count == 4, shape[0] == 2 else {
            throw DumpError(
                .badData,
                "kv_cache has shape \(shape); expected vLLM's [2, tokens, kv_heads × head_dim] (keys then values) "
                    + "or [2, tokens, kv_heads, head_dim]", file: header.path, dataset: tensor.name)
        }
        if shape.count == 4 { return ("thd", nil) }
        guard let key = headCountKeys.first(where: { header.metadata[$0] != nil }), let text = header.metadata[key]
        else { return ("tc", nil) }
        guard let heads = Int(text.trimmingCharacters(in: .whitespaces)), heads > 0 else {
            throw DumpError(
                .badData, "__metadata__ \(key) is '\(text)', not a positive whole number of heads", file: header.path)
        }
        guard shape[2] % heads == 0 else {
            throw DumpError(
                .badData,
                "kv_cache has \(shape[2]) channels, not a multiple of the \(heads) heads __metadata__ \(key) gives",
                file: header.path, dataset: tensor.name)
        }
        return ("tc", heads)
    }

    /// How a safetensors dtype is described to libhdf5 (bfloat16 as its bits, uint16; BOOL as uint8).
    static func externalElement(_ dtype: SafetensorsDType) -> StoredElement {
        switch dtype {
        case .float16: return .float16
        case .float32: return .float32
        case .float64: return .float64
        case .bfloat16, .uint16: return .integer(bits: 16, signed: false)
        case .int8: return .integer(bits: 8, signed: true)
        case .uint8, .bool: return .integer(bits: 8, signed: false)
        case .int16: return .integer(bits: 16, signed: true)
        case .int32: return .integer(bits: 32, signed: true)
        case .uint32: return .integer(bits: 32, signed: false)
        case .int64: return .integer(bits: 64, signed: true)
        case .uint64: return .integer(bits: 64, signed: false)
        }
    }

    /// `path` made absolute against the working directory (libhdf5 opens external files by name).
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
