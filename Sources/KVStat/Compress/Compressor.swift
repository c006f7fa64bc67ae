// `kvstat compress`: applies a fit's projections to a dump, streaming token blocks, and writes the compressed
// cache (schema kvstat.compressed/1, docs/compressed-format.md): float16 latents (or cskv's int8/int4 codes with
// float16 scales and minima), the recent-token window in float16, the projections, lengths and provenance.
// Written with libhdf5 straight to a temporary file beside the output (one block per tensor in memory, never
// the whole file), fsynced and renamed into place; on any error the temporary file is removed.
import FileDigest
import Foundation
import HDF5Kit
import KVNumerics

/// What to compress and how.
public struct CompressionRequest {
    public var dump: Dump
    public var runs: TokenRuns
    /// The selection in words (nil: the whole dump).
    public var selection: String?
    public var projections: [Projection]
    /// Rank used of each projection (a prefix of its basis).
    public var ranks: [Int]
    public var unitNames: [String]
    public var report: FitReport
    public var artifactPath: String
    public var rankRatio: Double?
    public var blockTokens: Int

    public init(
        dump: Dump, runs: TokenRuns, selection: String?, projections: [Projection], ranks: [Int], unitNames: [String],
        report: FitReport, artifactPath: String, rankRatio: Double?, blockTokens: Int
    ) {
        (self.dump, self.runs, self.selection, self.projections, self.ranks, self.unitNames) = (
            dump, runs, selection, projections, ranks, unitNames
        )
        (self.report, self.artifactPath, self.rankRatio, self.blockTokens) = (
            report, artifactPath, rankRatio, blockTokens
        )
    }
}

public enum Compressor {
    /// Float16 bit pattern of `x` (round to nearest even; ±Inf beyond the half range).
    @inline(__always) static func half(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    /// Compresses `request` into `path` (which the caller has checked is neither an input nor a user's file).
    public static func compress(_ request: CompressionRequest, to path: String) throws(DumpError) -> CompressionSummary
    {
        let dump = request.dump
        let options = request.report.options
        let cskv = options.method == .cskv
        let window = cskv ? options.window : 0
        let quantization = cskv ? options.quantization : .none
        let group = options.quantGroup
        let quantizer = quantization == .none ? nil : LatentQuantizer(bits: quantization.bits, group: group)
        let stored = StoredRows(runs: request.runs, blockTokens: request.blockTokens, window: window, group: group)
        let kinds = Set(request.projections.map(\.kind)).sorted()
        let layers = Set(request.projections.flatMap(\.layers)).sorted()
        let heads = Dictionary(uniqueKeysWithValues: kinds.map { ($0, dump.shape.heads(of: $0)) })
        let headDim = dump.shape.headDim
        let tokens = request.runs.totalTokens
        let originalBytes = tokens * layers.count * kinds.reduce(0) { $0 + heads[$1]! * headDim } * 2
        let ratio = LowRankFit.memoryRatio(
            request.projections, ranks: request.ranks, runs: request.runs, options: options, channels: heads,
            headDim: headDim, layers: layers.count)
        let usesKeyGroups = quantizer != nil && kinds.contains { $0 != .value }
        var manifest = CompressedManifest(
            kvstatVersion: KVStatVersion.current, dumpPath: dump.path, dumpSHA256: try dump.sha256(),
            selection: request.selection, artifactPath: request.artifactPath,
            artifactSHA256: try digest(request.artifactPath), method: options.method.rawValue,
            rankRatio: request.rankRatio, window: window, quantization: quantization.rawValue, quantGroup: group,
            layers: layers, kinds: kinds.map(\.rawValue), units: request.unitNames, kvHeads: dump.shape.kvHeads,
            headDim: headDim, sequences: request.runs.lengths.indices.filter { request.runs.lengths[$0] > 0 },
            starts: request.runs.lengths.indices.filter { request.runs.lengths[$0] > 0 }.map { sequence in
                request.runs.runs.first { $0.sequence == sequence }?.start ?? 0
            },
            lengths: request.runs.lengths.filter { $0 > 0 }, tokens: tokens, latentTokens: stored.latentTokens,
            windowTokens: stored.windowTokens, blockTokens: stored.plan.blockTokens,
            originalFloat16Bytes: originalBytes, accountedRatio: ratio,
            accountedBytes: Int((ratio * Double(originalBytes)).rounded()), payloadBytes: 0,
            projectionBytes: zip(request.projections, request.ranks).reduce(0) {
                $0 + 4 * $1.0.dimension * ($1.1 + ($1.0.mean == nil ? 0 : 1))
            }, groupIndexBytes: usesKeyGroups ? 4 * stored.keyGroupStarts.count : 0,
            rope: kinds.contains(.keyPreRope) ? request.report.rope : nil)
        // Room for the payload as accounted plus the fixed costs, with a margin for HDF5's metadata.
        try DiskSpace.require(manifest.accountedBytes + manifest.projectionBytes + (1 << 20), for: path)
        let temporary = AtomicFile.temporaryPath(for: path)
        unlink(temporary)
        do {
            try writeFile(temporary, request: request, stored: stored, quantizer: quantizer, manifest: &manifest)
            try syncAndRename(temporary, to: path)
        } catch {
            unlink(temporary)
            throw Self.naming(path, for: temporary, error)
        }
        let size = fileBytes(path)
        let dumpSize = dumpBytes(dump.path)
        return CompressionSummary(
            manifest: manifest, compressedFileBytes: size, dumpFileBytes: dumpSize,
            measuredRatio: originalBytes > 0 ? Double(size) / Double(originalBytes) : 0,
            ratioToDumpFile: dumpSize > 0 ? Double(size) / Double(dumpSize) : 0,
            unaccountedBytes: size - manifest.accountedBytes,
            metadataBytes: size - manifest.payloadBytes - manifest.projectionBytes - manifest.groupIndexBytes)
    }

    /// Writes every dataset, then the manifest (with the payload's bytes) as the root attribute `manifest`.
    private static func writeFile(
        _ temporary: String, request: CompressionRequest, stored: StoredRows, quantizer: LatentQuantizer?,
        manifest: inout CompressedManifest
    ) throws(DumpError) {
        let dump = request.dump
        let headDim = dump.shape.headDim
        let file = try translatingWrite(temporary) { try HDF5File.create(temporary) }
        let root = try translatingWrite(temporary) { try file.root() }
        var payload = 0
        // Datasets per unit and per (kind, layer) window.
        var latentSets: [HDF5Dataset] = []
        var scaleSets: [HDF5Dataset?] = []
        var zeroSets: [HDF5Dataset?] = []
        try translatingWrite(temporary) {
            try root.setAttribute("format", CompressedManifest.format)
            _ = try root.writeDataset(
                "lengths", shape: [manifest.lengths.count], values: manifest.lengths.map(Int64.init))
            _ = try root.writeDataset(
                "sequences", shape: [manifest.sequences.count], values: manifest.sequences.map(Int64.init))
            if manifest.groupIndexBytes > 0 {
                let starts = stored.keyGroupStarts.map { Int32($0) }
                let set = try root.createDataset("key_group_start", shape: [starts.count], element: .int32)
                try starts.withUnsafeBytes { try set.write($0, element: .int32, start: [0], count: [starts.count]) }
            }
            // Contiguous datasets (no chunk index): the extents are known up front and nothing is filtered.
            for (index, p) in request.projections.enumerated() {
                let rank = request.ranks[index]
                let unit = try root.createGroup("units/" + request.unitNames[index])
                let basis = rank == p.rank ? p.basis : p.truncated(to: rank).basis
                try unit.writeDataset("proj", shape: [p.dimension, rank], values: basis.values)
                if let mean = p.mean { try unit.writeDataset("mean", shape: [mean.count], values: mean) }
                try unit.setAttribute("kind", p.kind.rawValue)
                try unit.setAttribute("layers", p.layers.map(Double.init))
                try unit.setAttribute("channels", [Double(p.channels.lowerBound), Double(p.channels.upperBound)])
                let n = stored.latentTokens
                if let quantizer {
                    let width = quantizer.bits == 8 ? rank : (rank + 1) / 2
                    latentSets.append(
                        try unit.createDataset("codes", shape: [n, width], element: .uint8))
                    let shape =
                        p.kind == .value
                        ? [n, (rank + quantizer.group - 1) / quantizer.group] : [stored.keyGroupStarts.count, rank]
                    scaleSets.append(
                        try unit.createDataset("scale", shape: shape, element: .float16))
                    zeroSets.append(
                        try unit.createDataset("zero", shape: shape, element: .float16))
                    payload += n * width + 4 * shape[0] * shape[1]
                } else {
                    latentSets.append(
                        try unit.createDataset(
                            "latent", shape: [n, rank], element: .float16))
                    scaleSets.append(nil)
                    zeroSets.append(nil)
                    payload += 2 * n * rank
                }
            }
        }
        let index = ProjectionGroups(request.projections)
        var settings = ReconstructionSettings()
        settings.blockTokens = request.blockTokens
        let scratch = ReadScratch()
        var keyGroupOffset = 0
        for key in index.keys {
            let members = index.members[key] ?? []
            var reconstructor = ReconstructionEvaluator.reconstructor(
                request.projections, ranks: request.ranks, kind: key.kind, layers: key.layers, dump: dump,
                settings: settings, index: index)
            let channels = dump.shape.heads(of: key.kind) * headDim
            let readers = try key.layers.map { layer throws(DumpError) in
                try TensorReader(dump: dump, layer: layer, kind: key.kind, scratch: scratch)
            }
            let windowSets = try translatingWrite(temporary) {
                try key.layers.map { layer in
                    try root.createDataset(
                        "window/\(key.kind.rawValue)/layer_\(layer)", shape: [stored.windowTokens, channels],
                        element: .float16)
                }
            }
            payload += 2 * stored.windowTokens * channels * key.layers.count
            var excludedRows: [Int] = []
            var buffers = [[Float]](repeating: [], count: key.layers.count)
            keyGroupOffset = 0
            for (blockIndex, block) in stored.blocks.enumerated() {
                let isWindow = stored.isWindow(block)
                let (rows, _, excluded) = try reading(dump.path) {
                    try stored.plan.readGroup(blockIndex, from: readers, into: &buffers)
                }
                excludedRows += excluded.sorted().map { block.rowStart + $0 }
                let latentRowsOfBlock = (0..<rows).filter { !isWindow[$0] }
                for (position, member) in members.enumerated() {
                    let rank = request.ranks[member]
                    let y = reconstructor.latents(buffers, rows: rows, projection: position)
                    try translatingWrite(temporary) {
                        try writeLatents(
                            y, rows: latentRowsOfBlock, rank: rank, kind: key.kind, quantizer: quantizer,
                            block: block, keyGroupOffset: keyGroupOffset, latent: latentSets[member],
                            scale: scaleSets[member], zero: zeroSets[member])
                    }
                }
                keyGroupOffset += block.keyGroupStarts.count
                // The window rows of each layer, exact (float16).
                let windowRows = (0..<rows).filter { isWindow[$0] }
                guard !windowRows.isEmpty else { continue }
                for position in key.layers.indices {
                    var bits = [UInt16](repeating: 0, count: windowRows.count * channels)
                    for (i, r) in windowRows.enumerated() {
                        for c in 0..<channels { bits[i * channels + c] = half(buffers[position][r * channels + c]) }
                    }
                    try translatingWrite(temporary) {
                        try bits.withUnsafeBytes {
                            try windowSets[position].write(
                                $0, element: .float16, start: [block.windowStart, 0],
                                count: [windowRows.count, channels])
                        }
                    }
                }
            }
            if !excludedRows.isEmpty {
                try translatingWrite(temporary) {
                    for layer in key.layers {
                        try root.writeDataset(
                            "excluded/\(key.kind.rawValue)/layer_\(layer)", shape: [excludedRows.count],
                            values: excludedRows.map(Int64.init))
                    }
                }
            }
        }
        try dump.checkUnchanged()
        manifest.payloadBytes = payload
        let text = try translatingWrite(temporary) { try jsonText(manifest) }
        try translatingWrite(temporary) {
            try root.setAttribute("manifest", text)
            try file.flush()
        }
    }

    /// Writes one block's latents of one unit: float16, or codes with their groups' scales and minima.
    private static func writeLatents(
        _ y: [Float], rows latentRows: [Int], rank: Int, kind: TensorKind, quantizer: LatentQuantizer?,
        block: StoredBlock, keyGroupOffset: Int, latent: HDF5Dataset, scale: HDF5Dataset?, zero: HDF5Dataset?
    ) throws {
        let n = latentRows.count
        guard n > 0 else { return }
        guard let quantizer else {
            var bits = [UInt16](repeating: 0, count: n * rank)
            for (i, r) in latentRows.enumerated() { for c in 0..<rank { bits[i * rank + c] = half(y[r * rank + c]) } }
            try bits.withUnsafeBytes {
                try latent.write($0, element: .float16, start: [block.latentStart, 0], count: [n, rank])
            }
            return
        }
        var codes = [UInt8](repeating: 0, count: n * rank)
        let group = quantizer.group
        var scales: [UInt16] = []
        var zeros: [UInt16] = []
        if kind == .value {
            // Per token: groups of `group` columns.
            let groups = (rank + group - 1) / group
            scales = [UInt16](repeating: 0, count: n * groups)
            zeros = scales
            y.withUnsafeBufferPointer { y in
                for (i, r) in latentRows.enumerated() {
                    for g in 0..<groups {
                        let columns = (g * group)..<min(g * group + group, rank)
                        let (s, z, groupCodes) = quantizer.encode(y, at: columns.map { r * rank + $0 })
                        scales[i * groups + g] = half(s)
                        zeros[i * groups + g] = half(z)
                        for (c, code) in zip(columns, groupCodes) { codes[i * rank + c] = code }
                    }
                }
            }
            try scales.withUnsafeBytes {
                try scale!.write($0, element: .float16, start: [block.latentStart, 0], count: [n, groups])
            }
            try zeros.withUnsafeBytes {
                try zero!.write($0, element: .float16, start: [block.latentStart, 0], count: [n, groups])
            }
        } else {
            // Per channel: each group's rows (latent indices start ..< next start, ending at the block's end).
            let starts = block.keyGroupStarts
            scales = [UInt16](repeating: 0, count: starts.count * rank)
            zeros = scales
            for (g, start) in starts.enumerated() {
                let end = g + 1 < starts.count ? starts[g + 1] : block.latentStart + n
                let local = (start - block.latentStart)..<(end - block.latentStart)
                y.withUnsafeBufferPointer { y in
                    for c in 0..<rank {
                        let (s, z, groupCodes) = quantizer.encode(y, at: local.map { latentRows[$0] * rank + c })
                        scales[g * rank + c] = half(s)
                        zeros[g * rank + c] = half(z)
                        for (i, code) in zip(local, groupCodes) { codes[i * rank + c] = code }
                    }
                }
            }
            if !starts.isEmpty {
                try scales.withUnsafeBytes {
                    try scale!.write($0, element: .float16, start: [keyGroupOffset, 0], count: [starts.count, rank])
                }
                try zeros.withUnsafeBytes {
                    try zero!.write($0, element: .float16, start: [keyGroupOffset, 0], count: [starts.count, rank])
                }
            }
        }
        let packed = LatentCodes.pack(codes, rows: n, columns: rank, bits: quantizer.bits)
        try packed.withUnsafeBytes {
            try latent.write($0, element: .uint8, start: [block.latentStart, 0], count: [n, packed.count / n])
        }
    }

    /// Runs `body`, turning any HDF5 or other failure into one `cannotWrite` error naming `path`.
    /// `error` with the output `path` named where it named the (removed) temporary file.
    static func naming(_ path: String, for temporary: String, _ error: DumpError) -> DumpError {
        guard error.file == temporary else { return error }
        var renamed = error
        renamed.file = path
        return renamed
    }

    static func translatingWrite<T>(_ path: String, _ body: () throws -> T) throws(DumpError) -> T {
        do {
            return try body()
        } catch let error as DumpError {
            throw error
        } catch {
            let reason = (error as? HDF5Error)?.message ?? "\(error)"
            throw DumpError(.cannotWrite, "cannot write the compressed file (\(reason))", file: path)
        }
    }

    /// Runs a read of the dump `path`, passing its `DumpError` on (any other failure: not readable).
    static func reading<T>(_ path: String, _ body: () throws -> T) throws(DumpError) -> T {
        do {
            return try body()
        } catch let error as DumpError {
            throw error
        } catch {
            throw DumpError(.notReadable, "cannot read (\(error))", file: path)
        }
    }

    static func jsonText<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func digest(_ path: String) throws(DumpError) -> String {
        do { return try SHA256.hex(ofFileAt: path) } catch {
            throw DumpError(.cannotOpen, "cannot hash the artifact (\(error))", file: path)
        }
    }

    /// fsyncs `temporary` and renames it to `path`.
    static func syncAndRename(_ temporary: String, to path: String) throws(DumpError) {
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            let failed = fsync(fd) != 0 ? errno : 0
            close(fd)
            if failed != 0 {
                throw DumpError(
                    .cannotWrite, "cannot write the output (\(String(cString: strerror(failed))))", file: path)
            }
        }
        if rename(temporary, path) != 0 {
            throw DumpError(
                .cannotWrite, "cannot move the output into place (\(String(cString: strerror(errno))))", file: path)
        }
    }

    static func fileBytes(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Bytes of a dump on disk: the file, or the files of a folder.
    static func dumpBytes(_ path: String) -> Int {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return fileBytes(path)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.reduce(0) { $0 + fileBytes(path + "/" + $1) }
    }
}

/// Packing of quantization codes: int8 one per byte; int4 two per byte, column 2j in the low nibble and
/// 2j + 1 in the high one (a last odd column leaves the high nibble 0).
public enum LatentCodes {
    public static func pack(_ codes: [UInt8], rows: Int, columns: Int, bits: Int) -> [UInt8] {
        guard bits == 4 else { return codes }
        let width = (columns + 1) / 2
        var packed = [UInt8](repeating: 0, count: rows * width)
        for r in 0..<rows {
            for c in 0..<columns {
                let code = codes[r * columns + c] & 0x0F
                packed[r * width + c / 2] |= c % 2 == 0 ? code : code << 4
            }
        }
        return packed
    }

    public static func unpack(_ packed: [UInt8], rows: Int, columns: Int, bits: Int) -> [UInt8] {
        guard bits == 4 else { return packed }
        let width = (columns + 1) / 2
        var codes = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns {
                let byte = packed[r * width + c / 2]
                codes[r * columns + c] = c % 2 == 0 ? byte & 0x0F : byte >> 4
            }
        }
        return codes
    }
}
