// The tensor reader against numpy: dumps written by h5py at test time (Tests/Fixtures/make_read_fixtures.py) in
// every axis order, element format, byte order and storage kvstat reads — contiguous, chunked, gzip, shuffle,
// filter masks that skip filters, filters left to libhdf5 — read whole, in misaligned blocks that split chunks
// (the decoded-chunk cache), by head ranges and one token at a time; values must equal numpy's bit for bit.
// Corrupt gzip chunks must be one clear error, never a crash.
import Foundation
import Testing

@testable import KVStat

/// The reader's fixtures, generated once per test process into a temporary folder.
enum ReadFixtures {
    static let directory: String = {
        let folder = Fixtures.generated(by: "make_read_fixtures.py", prefix: "kvstat-read")
        atexit { try? FileManager.default.removeItem(atPath: ReadFixtures.directory) }  // ~26 MB
        return folder
    }()

    /// One fixture: its shape, and whether kvstat should decode its chunks itself.
    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var layers: Int
        var sequences: Int
        var heads: Int
        var tokens: Int
        var headDim: Int
        var direct: Bool
        var testDescription: String { name }
        var columns: Int { heads * headDim }
    }

    static func cases() throws -> [Case] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode([Case].self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/cases.json")))
    }

    static func corrupt() throws -> [String] {
        let url = URL(fileURLWithPath: directory + "/corrupt.json")
        return try JSONDecoder().decode([String].self, from: Data(contentsOf: url))
    }

    /// What numpy read: per layer, key then value, `sequences·tokens × columns` rows.
    static func expected(_ c: Case) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/\(c.name).f32"))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// Whether two floats are the same value: equal bit patterns (so -0 ≠ +0), or both NaN.
private func same(_ a: Float, _ b: Float) -> Bool {
    a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
}

@Suite struct TensorReaderTests {
    /// Reads `tokens` of every sequence and `heads` of one tensor, in pieces of `step` tokens.
    private func read(
        _ reader: TensorReader, _ c: ReadFixtures.Case, heads: Range<Int>, tokens: Range<Int>, step: Int
    ) throws -> [Float] {
        let columns = heads.count * c.headDim
        var rows = [Float](repeating: .nan, count: c.sequences * tokens.count * columns)
        try rows.withUnsafeMutableBufferPointer { out in
            for s in 0..<c.sequences {
                for start in stride(from: tokens.lowerBound, to: tokens.upperBound, by: step) {
                    let count = min(step, tokens.upperBound - start)
                    let row = s * tokens.count + start - tokens.lowerBound
                    try reader.read(sequence: s, start: start, count: count, heads: heads, into: out, row: row)
                }
            }
        }
        return rows
    }

    /// numpy's rows of one tensor restricted to `heads` and `tokens`.
    private func slice(
        _ all: ArraySlice<Float>, _ c: ReadFixtures.Case, heads: Range<Int>, tokens: Range<Int>
    ) -> [Float] {
        var out: [Float] = []
        for s in 0..<c.sequences {
            for t in tokens {
                let row = all.startIndex + (s * c.tokens + t) * c.columns
                out += all[(row + heads.lowerBound * c.headDim)..<(row + heads.upperBound * c.headDim)]
            }
        }
        return out
    }

    @Test(arguments: try ReadFixtures.cases())
    func valuesMatchNumpy(_ c: ReadFixtures.Case) throws {
        let dump = try Dump(path: ReadFixtures.directory + "/\(c.name).h5")
        #expect(dump.layerNumbers == Array(0..<c.layers))
        let expected = try ReadFixtures.expected(c)
        let perTensor = c.sequences * c.tokens * c.columns
        try #require(expected.count == c.layers * 2 * perTensor)
        // Whole sequences; blocks of 37 tokens (chunks split between reads); a head range in blocks of 100
        // from an odd start; single tokens — each from a fresh reader and from one shared scratch.
        let reads: [(heads: Range<Int>, tokens: Range<Int>, step: Int)] = [
            (0..<c.heads, 0..<c.tokens, c.tokens),
            (0..<c.heads, 0..<c.tokens, 37),
            (min(1, c.heads - 1)..<min(3, c.heads), 13..<c.tokens, 100),
            (0..<c.heads, (c.tokens - 5)..<c.tokens, 1),
        ]
        let scratch = ReadScratch()
        for (index, layer) in dump.layerNumbers.enumerated() {
            for (k, kind) in [TensorKind.key, .value].enumerated() {
                let offset = (index * 2 + k) * perTensor
                let all = expected[offset..<(offset + perTensor)]
                for plan in reads {
                    let reader = try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
                    #expect(reader.readsChunksDirectly == c.direct)
                    let got = try read(reader, c, heads: plan.heads, tokens: plan.tokens, step: plan.step)
                    let want = slice(all, c, heads: plan.heads, tokens: plan.tokens)
                    try #require(got.count == want.count)
                    let wrong = got.indices.filter { !same(got[$0], want[$0]) }
                    let first = wrong.first.map { "\($0): \(got[$0]) vs \(want[$0])" } ?? "-"
                    let allSame = wrong.isEmpty  // (a Bool, so that a failure prints the message, not the list)
                    let message =
                        "layer \(layer) \(kind) heads \(plan.heads) tokens \(plan.tokens) step \(plan.step): "
                        + "\(wrong.count) differ, first \(first)"
                    #expect(allSame, Comment(rawValue: message))
                    // Reading every token once in blocks that split chunks reads (and decodes) each chunk once: the
                    // part a block does not use is kept for the next block.
                    if c.direct && plan.step == 37, let chunkShape = reader.dataset.chunkShape {
                        // (One layer of a stacked dataset touches one chunk along the layer axis.)
                        let letters = reader.location.axes.letters
                        let perTensor = zip(zip(reader.dataset.shape, chunkShape), letters).reduce(1) {
                            $1.1 == "l" ? $0 : $0 * (($1.0.0 + $1.0.1 - 1) / $1.0.1)
                        }
                        #expect(reader.chunksRead == perTensor, "\(layer) \(kind): chunks read")
                    }
                }
            }
        }
    }

    /// Parts of unfiltered chunks read straight from the file (the decoded-chunk cache off, so that every piece
    /// short of a whole chunk takes that path; runs read one `pread` each, then as one span) equal numpy's values:
    /// a head panel over every token, token ranges and head ranges at offsets that split chunks, single tokens.
    @Test(arguments: try ReadFixtures.cases().filter(\.direct))
    func partsOfUnfilteredChunksMatchNumpy(_ c: ReadFixtures.Case) throws {
        let dump = try Dump(path: ReadFixtures.directory + "/\(c.name).h5")
        let expected = try ReadFixtures.expected(c)
        let perTensor = c.sequences * c.tokens * c.columns
        let panel = min(1, c.heads - 1)..<min(3, c.heads)
        let reads: [(heads: Range<Int>, tokens: Range<Int>, step: Int)] = [
            (panel, 0..<c.tokens, c.tokens),
            (0..<c.heads, 7..<c.tokens, 37),
            ((c.heads - 1)..<c.heads, 29..<(c.tokens - 3), 61),
            (0..<c.heads, (c.tokens - 5)..<c.tokens, 1),
        ]
        for (index, layer) in dump.layerNumbers.enumerated() {
            for (k, kind) in [TensorKind.key, .value].enumerated() {
                let offset = (index * 2 + k) * perTensor
                let all = expected[offset..<(offset + perTensor)]
                for shortRunBytes in [0, Int.max] {
                    let reader = try TensorReader(dump: dump, layer: layer, kind: kind)
                    guard reader.dataset.filters.isEmpty else { return }  // filtered chunks: not this path
                    reader.keepsPartlyReadChunks = false
                    reader.shortRunBytes = shortRunBytes
                    for plan in reads {
                        let got = try read(reader, c, heads: plan.heads, tokens: plan.tokens, step: plan.step)
                        let want = slice(all, c, heads: plan.heads, tokens: plan.tokens)
                        try #require(got.count == want.count)
                        let wrong = got.indices.filter { !same(got[$0], want[$0]) }
                        let allSame = wrong.isEmpty
                        let message =
                            "layer \(layer) \(kind) heads \(plan.heads) tokens \(plan.tokens) step \(plan.step) "
                            + "runs \(shortRunBytes): \(wrong.count) differ"
                        #expect(allSame, Comment(rawValue: message))
                    }
                    #expect(reader.chunkPartsRead > 0, "\(layer) \(kind): no part read from the file")
                }
            }
        }
    }

    /// The file truncated under open readers: a part of a chunk past the new end is read as before (through
    /// libhdf5, whose answer or error it is, the same as a reader that reads whole chunks), never a crash, and
    /// the dump still reports the change (exit 75).
    @Test func truncatedFileUnderDirectPartialReads() throws {
        let name = "bhtd_f16_chunked_parallel"  // chunks [1, 8, 256, 32]: the benchmark's, smaller
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-trunc-\(UUID()).h5").path
        try FileManager.default.copyItem(atPath: ReadFixtures.directory + "/\(name).h5", toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let c = try #require(try ReadFixtures.cases().first { $0.name == name })
        let dump = try Dump(path: copy)
        let direct = try TensorReader(dump: dump, layer: 0, kind: .value)
        direct.keepsPartlyReadChunks = false
        let whole = try TensorReader(dump: dump, layer: 0, kind: .value)
        let heads = 2..<4
        let before = try read(direct, c, heads: heads, tokens: 0..<c.tokens, step: c.tokens)
        #expect(direct.chunkPartsRead == 4)
        let expected = try ReadFixtures.expected(c)
        let perTensor = c.sequences * c.tokens * c.columns
        let want = slice(expected[perTensor..<(2 * perTensor)], c, heads: heads, tokens: 0..<c.tokens)
        #expect(before.indices.allSatisfy { same(before[$0], want[$0]) })
        try dump.checkUnchanged()

        let size = try #require(try FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int)
        let handle = try #require(FileHandle(forWritingAtPath: copy))
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        func after(_ reader: TensorReader) -> Result<[Float], DumpError> {
            do {
                return .success(try read(reader, c, heads: heads, tokens: 0..<c.tokens, step: c.tokens))
            } catch let error as DumpError {
                return .failure(error)
            } catch {
                Issue.record("not a DumpError: \(error)")
                return .failure(DumpError(.badData, "\(error)", file: copy))
            }
        }
        let parts = direct.chunkPartsRead
        let (directAfter, wholeAfter) = (after(direct), after(whole))
        #expect(direct.chunkPartsRead < parts + 4, "every part read from the file after it was cut in half")
        switch (directAfter, wholeAfter) {
        case (.success(let a), .success(let b)): #expect(a.indices.allSatisfy { same(a[$0], b[$0]) })
        case (.failure(let a), .failure(let b)): #expect(a.category == b.category)
        default: Issue.record("direct \(directAfter) vs whole chunks \(wholeAfter)")
        }
        let changed = #expect(throws: DumpError.self) { try dump.checkUnchanged() }
        #expect(changed?.category == .changedDuringRun)
    }

    /// A file with a user block (chunk addresses are then relative to it) is not read directly: parts of its
    /// chunks come through libhdf5, with numpy's values.
    @Test func userBlockFileIsReadThroughLibhdf5() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-ub-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let script = """
            import h5py, numpy as np, sys
            x = np.random.default_rng(7).standard_normal((1, 4, 300, 16)).astype("f2")
            with h5py.File(sys.argv[1] + "/ub.h5", "w", userblock_size=512) as f:
                f.attrs["kvstat_format"] = "kvstat.dump/1"
                for kind in ("key", "value"):
                    f.create_dataset("layers/0/" + kind, data=x, chunks=(1, 4, 64, 16)).attrs["axes"] = "bhtd"
            x[0, 1:3].transpose(1, 0, 2).reshape(-1).astype("<f4").tofile(sys.argv[1] + "/ub.f32")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, folder]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let want = try Data(contentsOf: URL(fileURLWithPath: folder + "/ub.f32")).withUnsafeBytes {
            Array($0.bindMemory(to: Float.self))
        }
        let dump = try Dump(path: folder + "/ub.h5")
        let reader = try TensorReader(dump: dump, layer: 0, kind: .value)
        reader.keepsPartlyReadChunks = false
        let c = ReadFixtures.Case(
            name: "ub", layers: 1, sequences: 1, heads: 4, tokens: 300, headDim: 16, direct: true)
        let got = try read(reader, c, heads: 1..<3, tokens: 0..<300, step: 300)
        try #require(got.count == want.count)
        #expect(got.indices.allSatisfy { same(got[$0], want[$0]) })
        #expect(reader.chunkPartsRead == 0)
    }

    @Test(arguments: try ReadFixtures.corrupt())
    func corruptGzipChunksAreOneClearError(_ name: String) throws {
        let path = ReadFixtures.directory + "/\(name).h5"
        let dump = try Dump(path: path)
        let key = try TensorReader(dump: dump, layer: 0, kind: .key)
        var rows = [Float](repeating: 0, count: 300 * 64)
        try rows.withUnsafeMutableBufferPointer { out in
            try key.read(sequence: 0, start: 0, count: 300, into: out, row: 0)  // the key's chunks are intact
        }
        let value = try TensorReader(dump: dump, layer: 0, kind: .value)
        #expect(value.readsChunksDirectly)
        let error = try #require(throws: DumpError.self) {
            try rows.withUnsafeMutableBufferPointer { out in
                try value.read(sequence: 0, start: 0, count: 300, into: out, row: 0)
            }
        }
        #expect(error.category == .notReadable)
        #expect(error.file == path && error.dataset == "/layers/0/value")
        #expect(error.message.contains("[0, 0, 64, 0]") && error.message.contains("does not decode"))
        #expect(!error.description.contains("\n"))
    }
}
