// Refusing datasets whose bytes are not really in the file: declared but never written (HDF5 would hand
// back the fill value), chunks never written where real tokens are, virtual datasets whose source file is
// missing, external raw-data files that are missing, and contiguous data past the end of the file. All from
// metadata: nothing here reads elements, so a 5 KB file declaring 2^40 tokens is refused at once.
import Foundation
import HDF5Kit

enum StorageCheck {
    /// Checks `dataset` as far as metadata allows. Partly written chunked datasets pass unless `requireAll`
    /// (their chunks are checked against the valid tokens by `checkChunks`); `dumpPath` and `fileSize` locate
    /// external files and bound contiguous data.
    static func check(_ dataset: HDF5Dataset, dumpPath: String, fileSize: Int, requireAll: Bool) throws(DumpError) {
        let unavailable = dataset.filters.filter { !$0.available }.map(\.name)
        if !unavailable.isEmpty {
            throw DumpError(.unavailableFilter, HDF5Filter.unavailableMessage(unavailable), dataset: dataset.path)
        }
        func exists(_ prefixVariable: String) -> (String) -> Bool {
            { sourceExists($0, dumpPath: dumpPath, prefixVariable: prefixVariable) }
        }
        if let missing = dataset.virtualSourceFiles.first(where: { !exists("HDF5_VDS_PREFIX")($0) }) {
            let message =
                "is a virtual dataset whose source file '\(missing)' is missing (its elements would read "
                + "as the fill value); put the file beside the dump or set HDF5_VDS_PREFIX"
            throw DumpError(.badData, message, dataset: dataset.path)
        }
        if let missing = dataset.externalFiles.first(where: { !exists("HDF5_EXTFILE_PREFIX")($0) }) {
            let message = "keeps its elements in the external file '\(missing)', which is missing"
            throw DumpError(.badData, message, dataset: dataset.path)
        }
        guard dataset.shape.allSatisfy({ $0 > 0 }) else { return }  // no elements: nothing to have written
        switch dataset.writtenState {
        case .never:
            throw DumpError(
                .badData, "is declared but never written (it holds only its fill value)",
                dataset: dataset.path)
        case .partly(let allocated, let total) where requireAll:
            let message =
                "has unwritten chunks: \(total - allocated) of \(total) chunks were never written (they "
                + "would read as the fill value)"
            throw DumpError(.badData, message, dataset: dataset.path)
        default: break
        }
        if let offset = dataset.contiguousOffset {
            let (end, overflow) = offset.addingReportingOverflow(dataset.storageBytes)
            if overflow || end > fileSize {
                let ends = overflow ? "beyond 2^63" : String(end)
                let message =
                    "file is truncated: the dataset's bytes end at offset \(ends), but the file holds "
                    + "\(fileSize) bytes"
                throw DumpError(.notReadable, message, dataset: dataset.path)
            }
        }
    }

    /// Whether a virtual dataset's source or an external file named `name` exists where HDF5 looks for it:
    /// as given, under the prefixes of `prefixVariable` (`${ORIGIN}` = the dump's folder), beside the dump,
    /// or in the working directory. `.` (the dump itself) and printf-style patterns (`%b`) are not checked.
    static func sourceExists(_ name: String, dumpPath: String, prefixVariable: String) -> Bool {
        if name == "." || name.contains("%") || name.isEmpty { return true }
        let manager = FileManager.default
        let folder = URL(fileURLWithPath: dumpPath).deletingLastPathComponent().path
        let base = (name as NSString).lastPathComponent
        var candidates = [name, folder + "/" + name, folder + "/" + base]
        if let prefixes = ProcessInfo.processInfo.environment[prefixVariable] {
            for prefix in prefixes.split(separator: ":") {
                let resolved = prefix.replacingOccurrences(of: "${ORIGIN}", with: folder)
                candidates += [resolved + "/" + name, resolved + "/" + base]
            }
        }
        return candidates.contains { manager.fileExists(atPath: $0) }
    }

    /// For a partly written chunked tensor: throws when a chunk holding a valid token of the given layers
    /// (indices along its `l` axis; `[nil]` for a one-layer dataset) was never written. Unwritten chunks
    /// that hold only padding are fine. Each distinct chunk is looked up once and the first unwritten one
    /// stops the walk, so the lookups number at most the written chunks plus one.
    static func checkChunks(
        _ dataset: HDF5Dataset, axes: AxisOrder, layerIndices: [Int?],
        runs: TokenRuns
    ) throws(DumpError) {
        guard case .partly(let allocated, let total) = dataset.writtenState, let chunk = dataset.chunkShape,
            chunk.count == axes.rank, dataset.shape.count == axes.rank
        else { return }
        let shape = dataset.shape
        var seen: Set<[Int]> = []
        for layerIndex in layerIndices {
            for run in runs.runs where run.count > 0 {
                // The chunk indices each axis spans for this run.
                var lower = [Int](repeating: 0, count: axes.rank)
                var upper = lower
                for (i, axis) in axes.letters.enumerated() {
                    let c = max(chunk[i], 1)
                    switch axis {
                    case "l": (lower[i], upper[i]) = ((layerIndex ?? 0) / c, (layerIndex ?? 0) / c)
                    case "b": (lower[i], upper[i]) = (run.sequence / c, run.sequence / c)
                    case "t": (lower[i], upper[i]) = (run.start / c, (run.start + run.count - 1) / c)
                    default: (lower[i], upper[i]) = (0, (shape[i] - 1) / c)
                    }
                }
                var index = lower
                while true {
                    if seen.insert(index).inserted {
                        let offset = zip(index, chunk).map { $0 * max($1, 1) }
                        if !dataset.isChunkWritten(at: offset) {
                            let t = axes.index(of: "t")!
                            let first = max(run.start, offset[t])
                            let last = min(run.start + run.count, offset[t] + max(chunk[t], 1)) - 1
                            let message =
                                "has unwritten chunks: \(total - allocated) of \(total) chunks were "
                                + "never written, among them the chunk at \(offset), which holds tokens "
                                + "\(first)–\(last) of sequence \(run.sequence) (not padding); they would read as "
                                + "the fill value"
                            throw DumpError(.badData, message, dataset: dataset.path)
                        }
                    }
                    // Next chunk index, last axis fastest.
                    var axis = axes.rank - 1
                    while axis >= 0 && index[axis] == upper[axis] {
                        index[axis] = lower[axis]
                        axis -= 1
                    }
                    if axis < 0 { break }
                    index[axis] += 1
                }
            }
        }
    }
}
