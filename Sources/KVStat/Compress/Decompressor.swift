// `kvstat decompress`: rebuilds a dump in the canonical per-layer layout (`layer_{l}/{kind}`, float16, axes
// `bthd`, `lengths`) from a compressed cache, block by block: x̂ = yPᵀ + μ from the stored (dequantized) latents
// with the fit's own code (GroupReconstructor.expand), window rows copied, non-finite rows written back as NaN.
import Foundation
import HDF5Kit
import KVNumerics

public enum Decompressor {
    /// Reads the manifest of a compressed cache (refusing anything else, exit 65/66).
    public static func manifest(_ path: String) throws(DumpError) -> CompressedManifest {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw DumpError(.cannotOpen, "no such file, or it is not readable", file: path)
        }
        return try translatingHDF5Errors(file: path) {
            let root = try HDF5File.open(path).root()
            guard try root.stringAttribute("format") == CompressedManifest.format,
                let text = try root.stringAttribute("manifest"),
                let manifest = try? JSONDecoder().decode(CompressedManifest.self, from: Data(text.utf8))
            else {
                throw DumpError(
                    .badLayout,
                    "is not a kvstat compressed cache (no format=\"\(CompressedManifest.format)\", or its manifest "
                        + "is not valid)",
                    file: path)
            }
            return manifest
        }
    }

    /// Whether `path` is a dump this command wrote (its root attribute `created_by` says so): -o may replace it.
    public static func isDecompressedDump(_ path: String) -> Bool {
        guard let root = try? HDF5File.open(path).root(), let by = (try? root.stringAttribute("created_by")) ?? nil
        else {
            return false
        }
        return by.hasPrefix("kvstat decompress")
    }

    /// Writes the rebuilt dump of the compressed cache `input` to `path` (checked by the caller), atomically.
    public static func decompress(_ input: String, to path: String) throws(DumpError) {
        let m = try manifest(input)
        func bad(_ what: String) -> DumpError { DumpError(.badLayout, what, file: input) }
        // Every number that sizes something is bounded first (a damaged manifest is an error, never a trap).
        guard m.lengths.allSatisfy({ (1...(1 << 40)).contains($0) }), m.lengths.count <= 1 << 20,
            m.lengths.count == m.sequences.count, (1...Dump.maxChannels).contains(m.kvHeads),
            (1...Dump.maxChannels).contains(m.headDim), m.kvHeads * m.headDim <= Dump.maxChannels,
            (0...(1 << 40)).contains(m.window), (1...65_536).contains(m.quantGroup),
            m.tokens == m.lengths.reduce(0, +), m.latentTokens >= 0, m.windowTokens >= 0,
            m.latentTokens.addingReportingOverflow(m.windowTokens) == (m.tokens, false), !m.units.isEmpty,
            let quantization = LatentQuantization(rawValue: m.quantization)
        else { throw bad("manifest's lengths, shape or quantization are out of range") }
        // The token counts must be those of the stored datasets before anything is planned from them.
        let first = try translatingHDF5Errors(file: input) { () throws -> (Int?, Int?) in
            let root = try HDF5File.open(input).root()
            let unit = try root.group("units/" + m.units[0])
            let latent = try unit.dataset(unit.exists("codes") ? "codes" : "latent")
            let window = try root.group("window")
            let kind = try window.memberNames().first.map { try window.group($0) }
            let layer = try kind?.memberNames().first.map { try kind!.dataset($0) }
            return (latent.shape.first, layer?.shape.first)
        }
        guard first.0 == m.latentTokens, first.1 == nil || first.1 == m.windowTokens else {
            throw bad(
                "stored latents (\(first.0 ?? 0) rows) or window (\(first.1 ?? 0) rows) do not match the manifest's "
                    + "\(m.latentTokens) latent and \(m.windowTokens) window tokens")
        }
        let quantizer = quantization == .none ? nil : LatentQuantizer(bits: quantization.bits, group: m.quantGroup)
        // The rebuilt dump's size from the shapes (not the manifest's own figure), padding included.
        let rows = (m.lengths.max() ?? 0).multipliedReportingOverflow(by: m.lengths.count)
        let perRow = (min(m.layers.count, 1 << 20) * (min(m.kinds.count, 8) + 1)).multipliedReportingOverflow(
            by: 2 * m.kvHeads * m.headDim)
        let bytes = rows.partialValue.multipliedReportingOverflow(by: perRow.partialValue)
        guard !rows.overflow, !perRow.overflow, !bytes.overflow, m.layers.count <= 1 << 20 else {
            throw bad("manifest's lengths and shape describe a dump too large to write")
        }
        try DiskSpace.require(bytes.partialValue + (1 << 20), for: path)
        let runs = TokenRuns(lengths: m.lengths)
        // Key quantization groups follow compress's blocks: the same plan (and the same memory per block).
        guard (1...(1 << 22)).contains(m.blockTokens) else { throw bad("manifest's block_tokens is not 1…4194304") }
        let stored = StoredRows(runs: runs, blockTokens: m.blockTokens, window: m.window, group: m.quantGroup)
        guard stored.latentTokens == m.latentTokens, stored.windowTokens == m.windowTokens else {
            throw bad("manifest's latent and window token counts do not match its lengths and window")
        }
        let temporary = AtomicFile.temporaryPath(for: path)
        unlink(temporary)
        do {
            try translatingHDF5Errors(file: input) {
                try write(input, manifest: m, stored: stored, quantizer: quantizer, to: temporary)
            }
            try Compressor.syncAndRename(temporary, to: path)
        } catch {
            unlink(temporary)
            throw Compressor.naming(path, for: temporary, error)
        }
    }

    private static func write(
        _ input: String, manifest m: CompressedManifest, stored: StoredRows, quantizer: LatentQuantizer?,
        to temporary: String
    ) throws {
        let source = try HDF5File.open(input).root()
        func bad(_ what: String) -> DumpError { DumpError(.badLayout, what, file: input) }
        // The projections, checked against the manifest's shape.
        var projections: [Projection] = []
        for name in m.units {
            let unit = try source.group("units/" + name)
            guard let kind = (try unit.stringAttribute("kind")).flatMap(TensorKind.init(rawValue:)),
                let layers = try unit.numericAttribute("layers"), !layers.isEmpty,
                layers.allSatisfy({ $0 >= 0 && $0 <= 1e9 && $0 == $0.rounded() }),
                let span = try unit.numericAttribute("channels"),
                let channels = FitArtifacts.range(span, within: 0...(m.kvHeads * m.headDim * 64))
            else { throw bad("unit \(name) lacks its kind, layers or channels") }
            // A unit rebuilds channels of one kind's rows: key and value rows are kv_heads × head_dim wide,
            // query rows a whole number of heads.
            let width = kind == .query ? channels.upperBound : m.kvHeads * m.headDim
            guard channels.upperBound <= width, kind != .query || channels.upperBound % max(m.headDim, 1) == 0 else {
                throw bad("unit \(name): channels \(channels) do not fit its \(kind.rawValue) rows")
            }
            let proj = try unit.dataset("proj")
            guard proj.shape.count == 2, proj.shape[0] == layers.count * channels.count, proj.shape[1] <= proj.shape[0]
            else {
                throw bad("unit \(name): proj has shape \(proj.shape)")
            }
            let basis: [Float] = try proj.readAll()
            let mean: [Float]? = unit.exists("mean") ? try unit.dataset("mean").readAll() : nil
            guard mean.map({ $0.count == proj.shape[0] }) ?? true else { throw bad("unit \(name): mean's length") }
            projections.append(
                Projection(
                    kind: kind, layers: layers.map { Int($0) }, channels: channels, heads: nil,
                    basis: Matrix(rows: proj.shape[0], columns: proj.shape[1], values: basis), mean: mean,
                    eigenvalues: []))
        }
        let keyGroupStarts: [Int] =
            source.exists("key_group_start")
            ? try source.dataset("key_group_start").readAll(as: Int64.self).map {
                Int($0)
            } : []
        guard keyGroupStarts.isEmpty || keyGroupStarts == stored.keyGroupStarts else {
            throw bad("key_group_start does not match the manifest's lengths, window and block_tokens")
        }
        let file = try HDF5File.create(temporary)
        let root = try file.root()
        try root.setAttribute("kvstat_format", "kvstat.dump/1")
        try root.setAttribute("created_by", "kvstat decompress (kvstat \(KVStatVersion.current))")
        try root.setAttribute("source_compressed_cache", input)
        try root.setAttribute("source_dump_sha256", m.dumpSHA256)
        try root.writeDataset("lengths", shape: [m.lengths.count], values: m.lengths.map(Int64.init))
        let maxLength = m.lengths.max() ?? 0
        // Pre-RoPE keys: `key` = RoPE(rebuilt key_pre_rope) is written too, at the tokens' positions in the dump.
        var rope: RotaryEmbedding?
        if let report = m.rope {
            guard let embedding = report.embedding, report.theta.isFinite, report.theta > 1,
                report.rotaryDim >= 2, report.rotaryDim <= m.headDim, report.rotaryDim % 2 == 0,
                m.starts.count == m.lengths.count, m.starts.allSatisfy({ (0...(1 << 40)).contains($0) })
            else { throw bad("manifest's rope (theta, style, rotary_dim) or starts are out of range") }
            rope = embedding
        }
        let index = ProjectionGroups(projections)
        for key in index.keys {
            let members = index.members[key] ?? []
            let heads = key.kind == .query ? projections[members[0]].channels.upperBound / m.headDim : m.kvHeads
            guard members.allSatisfy({ projections[$0].channels.upperBound <= heads * m.headDim }) else {
                throw bad("the \(key.kind.rawValue) units of layers \(IndexList.text(key.layers)) disagree on heads")
            }
            let channels = heads * m.headDim
            var reconstructor = GroupReconstructor(
                projections: members.map { projections[$0] }, ranks: members.map { projections[$0].rank },
                layers: key.layers, channels: channels, kind: key.kind, quantizer: nil)
            var outputs: [HDF5Dataset] = []
            var rotated: [HDF5Dataset] = []
            var windows: [HDF5Dataset] = []
            var excluded: [Set<Int>] = []
            for layer in key.layers {
                let out = try root.createDataset(
                    "layer_\(layer)/\(key.kind.rawValue)", shape: [m.lengths.count, maxLength, heads, m.headDim],
                    element: .float16, chunks: [1, min(maxLength, 256), heads, m.headDim])
                try out.setAttribute("axes", "bthd")
                outputs.append(out)
                if key.kind == .keyPreRope, rope != nil {
                    let post = try root.createDataset(
                        "layer_\(layer)/key", shape: [m.lengths.count, maxLength, heads, m.headDim],
                        element: .float16, chunks: [1, min(maxLength, 256), heads, m.headDim])
                    try post.setAttribute("axes", "bthd")
                    rotated.append(post)
                }
                let window = try source.dataset("window/\(key.kind.rawValue)/layer_\(layer)")
                try requireType(window, float16: true, file: input)
                guard window.shape == [stored.windowTokens, channels] else {
                    throw bad("window/\(key.kind.rawValue)/layer_\(layer) has shape \(window.shape)")
                }
                windows.append(window)
                let name = "excluded/\(key.kind.rawValue)/layer_\(layer)"
                excluded.append(
                    source.exists(name) ? Set(try source.dataset(name).readAll(as: Int64.self).map { Int($0) }) : [])
            }
            let units = try members.map { member in try UnitReader(source, name: m.units[member], stored: stored) }
            // Codes exactly when the manifest says the latents were quantized.
            if let unit = units.first(where: { ($0.scale != nil) != (quantizer != nil) }) {
                throw bad(
                    "holds \(unit.scale == nil ? "float16 latents" : "quantized codes") where the manifest's "
                        + "quantization says otherwise")
            }
            var keyGroup = 0
            for block in stored.blocks {
                let isWindow = stored.isWindow(block)
                let rows = block.rows
                var rebuilt = [[Float]](
                    repeating: [Float](repeating: 0, count: rows * channels), count: key.layers.count)
                let latentRowsOfBlock = (0..<rows).filter { !isWindow[$0] }
                for position in members.indices {
                    let y = try units[position].latents(
                        block: block, rows: rows, latentRows: latentRowsOfBlock, kind: key.kind,
                        quantizer: quantizer, keyGroupStarts: keyGroupStarts, firstGroup: keyGroup)
                    reconstructor.expand(
                        y, rows: rows, projection: position, latentRow: isWindow.map { !$0 }, into: &rebuilt)
                }
                keyGroup += block.keyGroupStarts.count
                let windowRows = (0..<rows).filter { isWindow[$0] }
                for position in key.layers.indices {
                    if !windowRows.isEmpty {
                        var bits = [UInt16](repeating: 0, count: windowRows.count * channels)
                        try bits.withUnsafeMutableBytes {
                            try windows[position].read(
                                start: [block.windowStart, 0], count: [windowRows.count, channels], as: .fileType,
                                into: $0)
                        }
                        for (i, r) in windowRows.enumerated() {
                            for c in 0..<channels {
                                rebuilt[position][r * channels + c] = Float(Float16(bitPattern: bits[i * channels + c]))
                            }
                        }
                    }
                    for r in 0..<rows where excluded[position].contains(block.rowStart + r) {
                        for c in 0..<channels { rebuilt[position][r * channels + c] = .nan }
                    }
                    var targets = [(outputs[position], rebuilt[position])]
                    if let rope, !rotated.isEmpty {
                        let positions = block.pieces.flatMap { piece in
                            (0..<piece.count).map { m.starts[piece.sequence] + piece.start + $0 }
                        }
                        targets.append(
                            (
                                rotated[position],
                                rope.applied(
                                    rebuilt[position], rows: rows, heads: heads, headDim: m.headDim,
                                    positions: positions)
                            ))
                    }
                    for (target, values) in targets {
                        let bits = values.map { Compressor.half($0) }
                        var row = 0
                        for piece in block.pieces {
                            try bits[(row * channels)..<((row + piece.count) * channels)].withUnsafeBytes {
                                try target.write(
                                    $0, element: .float16, start: [piece.sequence, piece.start, 0, 0],
                                    count: [1, piece.count, heads, m.headDim])
                            }
                            row += piece.count
                        }
                    }
                }
            }
        }
        try file.flush()
    }
}

/// Reads one unit's latents block by block, dequantized.
private struct UnitReader {
    let latent: HDF5Dataset
    let scale: HDF5Dataset?
    let zero: HDF5Dataset?
    let rank: Int

    init(_ source: HDF5Group, name: String, stored: StoredRows) throws {
        let unit = try source.group("units/" + name)
        rank = try unit.dataset("proj").shape[1]
        if unit.exists("codes") {
            latent = try unit.dataset("codes")
            scale = try unit.dataset("scale")
            zero = try unit.dataset("zero")
        } else {
            latent = try unit.dataset("latent")
            (scale, zero) = (nil, nil)
        }
        guard latent.shape.count == 2, latent.shape[0] == stored.latentTokens else {
            throw DumpError(.badLayout, "units/\(name): latents have shape \(latent.shape)", file: source.filePath)
        }
        // Blocks are read as raw stored bytes: float16 little-endian latents, scales and minimums, uint8 codes.
        try requireType(latent, float16: scale == nil, file: source.filePath)
        for set in [scale, zero].compactMap({ $0 }) { try requireType(set, float16: true, file: source.filePath) }
    }

    /// The `rows × rank` latents of a block (zero on window rows).
    func latents(
        block: StoredBlock, rows: Int, latentRows: [Int], kind: TensorKind, quantizer: LatentQuantizer?,
        keyGroupStarts: [Int], firstGroup: Int
    ) throws -> [Float] {
        var y = [Float](repeating: 0, count: rows * rank)
        let n = latentRows.count
        guard n > 0, rank > 0 else { return y }
        guard let quantizer, let scale, let zero else {
            guard latent.shape[1] == rank else {
                throw DumpError(
                    .badLayout, "latents have \(latent.shape[1]) columns, not \(rank)", file: latent.filePath)
            }
            var bits = [UInt16](repeating: 0, count: n * rank)
            try bits.withUnsafeMutableBytes {
                try latent.read(start: [block.latentStart, 0], count: [n, rank], as: .fileType, into: $0)
            }
            for (i, r) in latentRows.enumerated() {
                for c in 0..<rank { y[r * rank + c] = Float(Float16(bitPattern: bits[i * rank + c])) }
            }
            return y
        }
        let width = quantizer.bits == 8 ? rank : (rank + 1) / 2
        guard latent.shape[1] == width else {
            throw DumpError(.badLayout, "codes have \(latent.shape[1]) columns, not \(width)", file: latent.filePath)
        }
        var packed = [UInt8](repeating: 0, count: n * width)
        try packed.withUnsafeMutableBytes {
            try latent.read(start: [block.latentStart, 0], count: [n, width], as: .fileType, into: $0)
        }
        let codes = LatentCodes.unpack(packed, rows: n, columns: rank, bits: quantizer.bits)
        func halves(_ set: HDF5Dataset, _ start: Int, _ count: Int, _ columns: Int) throws -> [Float] {
            guard set.shape.count == 2, set.shape[1] == columns, start + count <= set.shape[0] else {
                throw DumpError(.badLayout, "scale/zero have shape \(set.shape)", file: set.filePath)
            }
            var bits = [UInt16](repeating: 0, count: count * columns)
            try bits.withUnsafeMutableBytes {
                try set.read(start: [start, 0], count: [count, columns], as: .fileType, into: $0)
            }
            return bits.map { Float(Float16(bitPattern: $0)) }
        }
        if kind == .value {
            let groups = (rank + quantizer.group - 1) / quantizer.group
            let s = try halves(scale, block.latentStart, n, groups)
            let z = try halves(zero, block.latentStart, n, groups)
            for (i, r) in latentRows.enumerated() {
                for c in 0..<rank {
                    let g = i * groups + c / quantizer.group
                    y[r * rank + c] = quantizer.value(codes[i * rank + c], scale: s[g], zero: z[g])
                }
            }
        } else {
            let count = block.keyGroupStarts.count
            guard count > 0 else { return y }
            let s = try halves(scale, firstGroup, count, rank)
            let z = try halves(zero, firstGroup, count, rank)
            var g = 0
            for (i, r) in latentRows.enumerated() {
                let t = block.latentStart + i
                while g + 1 < count && block.keyGroupStarts[g + 1] <= t { g += 1 }
                for c in 0..<rank {
                    y[r * rank + c] = quantizer.value(
                        codes[i * rank + c], scale: s[g * rank + c], zero: z[g * rank + c])
                }
            }
        }
        return y
    }
}

/// Refuses (one line, exit 65) a dataset of a compressed cache whose stored element is not what its raw bytes
/// are read as: IEEE half in little-endian order (`float16`), else 8-bit unsigned codes. A damaged file could
/// otherwise hand the reader elements of another width.
private func requireType(_ set: HDF5Dataset, float16: Bool, file: String) throws {
    let expected: Bool
    if float16 {
        expected = set.element == .float(bits: 16) && set.isLittleEndian && (set.floatFields?.isIEEEHalf ?? false)
    } else {
        expected = set.element == .integer(bits: 8, signed: false)
    }
    guard expected else {
        throw DumpError(
            .badLayout, "holds \(set.element) values, expected \(float16 ? "little-endian float16" : "uint8 codes")",
            file: file, dataset: set.path)
    }
}
