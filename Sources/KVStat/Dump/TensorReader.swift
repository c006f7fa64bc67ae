// Reads token ranges of one layer's tensor as float32 rows [tokens, heads × head_dim], whatever the stored
// axis order and element format: the hyperslab primitive every pass is built on.
import HDF5Kit
import KVNumerics

/// Reads rows of one (layer, kind) tensor. Owns its dataset handle and scratch buffers; not shared
/// between threads.
public final class TensorReader {
    public let dump: Dump
    public let layer: Int
    public let kind: TensorKind
    /// Heads of this tensor (query heads for queries).
    public let heads: Int
    public let headDim: Int
    let dataset: HDF5Dataset
    let location: TensorLocation
    let format: StorageFormat
    private let scratch: ReadScratch

    /// Opens the tensor of the layer numbered `layer` in the file (one of `dump.layerNumbers`: `layer_05` is
    /// 5). Readers that are used one at a time (one per layer, say) can share `scratch`, so memory is one
    /// block's worth of conversion buffers however many readers are open.
    public init(dump: Dump, layer: Int, kind: TensorKind, scratch: ReadScratch = ReadScratch()) throws(DumpError) {
        self.scratch = scratch
        self.dump = dump
        self.layer = layer
        self.kind = kind
        let (dataset, location) = try translatingHDF5Errors(file: dump.path) {
            try dump.dataset(layer: layer, kind: kind)
        }
        self.dataset = dataset
        self.location = location
        format = try translatingHDF5Errors(file: dump.path) {
            try StorageFormat.of(dataset, fileDtype: dump.attributes["dtype"])
        }
        heads = dump.shape.heads(of: kind)
        headDim = dump.shape.headDim
    }

    /// Dataset path, for messages.
    public var datasetPath: String { dataset.path }

    /// Reads tokens `start ..< start + count` of `sequence`, heads `heads`, into `output` starting at row
    /// `row`: output row `row + i` holds token `start + i`, columns `(h - heads.lowerBound) * headDim + d`,
    /// with `heads.count * headDim` columns per row.
    public func read(
        sequence: Int, start: Int, count: Int, heads headRange: Range<Int>? = nil,
        into output: UnsafeMutableBufferPointer<Float>, row: Int
    ) throws(DumpError) {
        let headRange = headRange ?? 0..<heads
        let axes = location.axes
        var starts = [Int](repeating: 0, count: axes.rank)
        var counts = dataset.shape
        for (i, axis) in axes.letters.enumerated() {
            switch axis {
            case "l": (starts[i], counts[i]) = (location.layerIndex ?? 0, 1)
            case "b": (starts[i], counts[i]) = (sequence, 1)
            case "h": (starts[i], counts[i]) = (headRange.lowerBound, headRange.count)
            case "t": (starts[i], counts[i]) = (start, count)
            default: break
            }
        }
        let elements = counts.reduce(1, *)
        let columns = headRange.count * headDim
        precondition(output.count >= (row + count) * columns, "output buffer too small")
        if elements == 0 { return }
        if scratch.converted.count < elements { scratch.converted = [Float](repeating: 0, count: elements) }
        try translatingHDF5Errors(file: dump.path) {
            try readConverted(starts: starts, counts: counts, elements: elements)
        }
        // Dense strides of the hyperslab in storage order.
        var strides = [Int](repeating: 1, count: axes.rank)
        for i in stride(from: axes.rank - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * counts[i + 1] }
        let st = strides[axes.index(of: "t")!]
        let sd = strides[axes.index(of: "d")!]
        let sh = axes.index(of: "h").map { strides[$0] } ?? 0
        let d = headDim
        let nh = headRange.count
        scratch.converted.withUnsafeBufferPointer { source in
            for i in 0..<count {
                let out = (row + i) * columns
                for h in 0..<nh {
                    let base = i * st + h * sh
                    if sd == 1 {
                        UnsafeMutableRawBufferPointer(
                            rebasing: UnsafeMutableRawBufferPointer(output)[
                                ((out + h * d) * 4)..<((out + h * d + d) * 4)]
                        )
                        .copyMemory(
                            from: UnsafeRawBufferPointer(
                                rebasing: UnsafeRawBufferPointer(source)[(base * 4)..<((base + d) * 4)]))
                    } else {
                        for j in 0..<d { output[out + h * d + j] = source[base + j * sd] }
                    }
                }
            }
        }
    }

    /// Reads the hyperslab into `converted` as float32 in storage order.
    private func readConverted(starts: [Int], counts: [Int], elements: Int) throws {
        switch format {
        case .float32, .float64:
            try scratch.converted.withUnsafeMutableBytes {
                try dataset.read(start: starts, count: counts, as: .float32, into: $0)
            }
        case .float16, .bfloat16:
            if scratch.raw.count < elements * 2 { scratch.raw = [UInt8](repeating: 0, count: elements * 2) }
            try scratch.raw.withUnsafeMutableBytes {
                try dataset.read(start: starts, count: counts, as: .fileType, into: $0)
            }
            scratch.raw.withUnsafeMutableBytes { bytes in
                let halves = bytes.bindMemory(to: UInt16.self)
                if !dataset.isLittleEndian {
                    for i in 0..<elements { halves[i] = halves[i].byteSwapped }
                }
                scratch.converted.withUnsafeMutableBufferPointer { out in
                    let source = UnsafeBufferPointer(rebasing: halves[0..<elements])
                    if format == .float16 {
                        HalfFloat.halfToFloat(source, out)
                    } else {
                        HalfFloat.bfloat16ToFloat(source, out)
                    }
                }
            }
        }
    }
}

/// Conversion buffers a `TensorReader` reads through: the stored bytes and their float32 values in storage
/// order. Shared by readers used one after another; never by two threads at once.
public final class ReadScratch {
    var raw: [UInt8] = []
    var converted: [Float] = []

    public init() {}
}
