// Reading and checking a dump's padding description: `lengths` (valid tokens at the start of each sequence)
// or `attention_mask` (1 = real token, 0 = padding, at any position). Both are checked for shape, type and
// values before they are trusted, and the mask is read in pieces whose total is bounded by the tensors'
// declared tokens, never by what the mask itself declares.
import HDF5Kit

enum PaddingReader {
    /// Mask elements read per piece (8 MiB as int64 or float64).
    static let maskPiece = 1 << 20

    /// The valid tokens described by `dataset`, a `[sequences]` lengths dataset: integers (an integer type,
    /// or floats that are exactly integral) in 0…tokens, written in full (`StorageCheck`, with the dump's
    /// `dumpPath` and `fileSize`).
    static func lengths(
        _ dataset: HDF5Dataset, sequences: Int, tokens: Int, dumpPath: String,
        fileSize: Int
    ) throws(DumpError) -> TokenRuns {
        let path = dataset.path
        guard dataset.shape == [sequences] else {
            let message = "lengths has shape \(dataset.shape); expected [\(sequences)] (one per sequence)"
            throw DumpError(.badData, message, dataset: path)
        }
        try StorageCheck.check(dataset, dumpPath: dumpPath, fileSize: fileSize, requireAll: true)
        var lengths: [Int] = []
        lengths.reserveCapacity(sequences)
        switch dataset.element {
        case .integer:
            let values = try translating { try dataset.readAll(as: Int64.self) }
            if let bad = values.first(where: { $0 < 0 || $0 > Int64(tokens) }) {
                throw DumpError(.badData, "lengths holds \(bad), outside 0…\(tokens)", dataset: path)
            }
            lengths = values.map { Int($0) }
        case .float:
            let values = try translating { try dataset.readAll(as: Double.self) }
            if let bad = values.first(where: { !$0.isFinite || $0 != $0.rounded() }) {
                let message = "lengths holds \(bad); lengths must be whole numbers of tokens (store them as integers)"
                throw DumpError(.badData, message, dataset: path)
            }
            if let bad = values.first(where: { $0 < 0 || $0 > Double(tokens) }) {
                throw DumpError(.badData, "lengths holds \(bad), outside 0…\(tokens)", dataset: path)
            }
            lengths = values.map { Int($0) }
        default:
            let message = "lengths stores \(dataset.element); expected integers (one valid-token count per sequence)"
            throw DumpError(.badData, message, dataset: path)
        }
        return TokenRuns(lengths: lengths)
    }

    /// The valid tokens described by `dataset`, a `[sequences, tokens]` attention mask (`[tokens]` when there
    /// is one sequence) holding only 0 and 1 (bool, integer or float), written in full. The shape is checked
    /// first, so what is read is bounded by the tensors' declared tokens, whatever the mask declares.
    static func mask(
        _ dataset: HDF5Dataset, sequences: Int, tokens: Int, dumpPath: String,
        fileSize: Int
    ) throws(DumpError) -> TokenRuns {
        let path = dataset.path
        let flat = sequences == 1 && dataset.shape == [tokens]
        guard dataset.shape == [sequences, tokens] || flat else {
            let message = "attention mask has shape \(dataset.shape); expected [\(sequences), \(tokens)]"
            throw DumpError(.badData, message, dataset: path)
        }
        try StorageCheck.check(dataset, dumpPath: dumpPath, fileSize: fileSize, requireAll: true)
        switch dataset.element {
        case .integer, .float: break
        default:
            let message = "attention mask stores \(dataset.element); expected 0 and 1 as bool, integers or floats"
            throw DumpError(.badData, message, dataset: path)
        }
        var runs: [TokenRun] = []
        var lengths = [Int](repeating: 0, count: sequences)
        var values: [Double] = []
        for b in 0..<sequences {
            var open: Int?  // start of the run of ones in progress
            var t0 = 0
            while t0 < tokens {
                let n = min(maskPiece, tokens - t0)
                let start = flat ? [t0] : [b, t0]
                let count = flat ? [n] : [1, n]
                // Each piece becomes a list of 0/1 flags; the first other value is an error. Integers and bools are
                // read converted to float64 too: 0 and 1 stay exact, and any other value stays other.
                var ones = [Bool](repeating: false, count: n)
                if values.count < n { values = [Double](repeating: 0, count: n) }
                try translating {
                    try values.withUnsafeMutableBytes {
                        try dataset.read(start: start, count: count, as: .float64, into: $0)
                    }
                }
                for i in 0..<n {
                    let v = values[i]
                    guard v == 0 || v == 1 else {
                        let text = v.isFinite && v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
                        throw badMask(text, b, t0 + i, flat, path)
                    }
                    ones[i] = v == 1
                }
                for i in 0..<n {
                    if ones[i], open == nil { open = t0 + i }
                    if !ones[i], let s = open {
                        runs.append(TokenRun(sequence: b, start: s, count: t0 + i - s))
                        lengths[b] += t0 + i - s
                        open = nil
                    }
                }
                t0 += n
            }
            if let s = open {
                runs.append(TokenRun(sequence: b, start: s, count: tokens - s))
                lengths[b] += tokens - s
            }
        }
        return TokenRuns(runs: runs, lengths: lengths)
    }

    private static func badMask(_ value: String, _ b: Int, _ t: Int, _ flat: Bool, _ path: String) -> DumpError {
        let position = flat ? "[\(t)]" : "[\(b), \(t)]"
        let message =
            "attention mask holds \(value) at \(position); a mask must hold only 0 (padding) and 1 "
            + "(real token)"
        return DumpError(.badData, message, dataset: path)
    }

    private static func translating<T>(_ body: () throws -> T) throws(DumpError) -> T {
        do {
            return try body()
        } catch let error as DumpError {
            throw error
        } catch let error as HDF5Error {
            throw DumpError(error)
        } catch {
            throw DumpError(.notReadable, "\(error)")
        }
    }
}
