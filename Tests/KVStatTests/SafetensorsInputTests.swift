// Safetensors dumps read through the in-memory HDF5 catalogue: files written by the `safetensors` Python package
// at test time (Tests/Fixtures/make_safetensors_fixtures.py) — per-layer names in one file, vLLM's KV-connector
// folder of [2, tokens, heads × head_dim] bfloat16 files, [2, tokens, heads, head_dim] float16, float32 with
// signed zeros and subnormals — must read exactly what numpy holds; headers that lie are one clear error; a file
// of the folder that changes is caught by `checkUnchanged`.
import FileDigest
import Foundation
import Testing

@testable import KVStat

/// The fixtures, generated once per test process into a temporary folder.
enum SafetensorsFixtures {
    static let directory: String = {
        let folder = Fixtures.generated(by: "make_safetensors_fixtures.py", prefix: "kvstat-safetensors")
        atexit { try? FileManager.default.removeItem(atPath: SafetensorsFixtures.directory) }
        return folder
    }()

    static func path(_ name: String) -> String { directory + "/" + name }

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name)))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// A scratch folder holding a copy of the fixture `name` (a file or folder), removed by the caller.
    static func copy(_ name: String) throws -> (folder: String, path: String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-st-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path(name), toPath: folder + "/" + name)
        return (folder, folder + "/" + name)
    }
}

/// Every row of `kind` of `layer` (all heads, all tokens of sequence 0), read in blocks of `step` tokens.
private func readRows(
    _ dump: Dump, layer: Int, kind: TensorKind, heads: Range<Int>? = nil, step: Int
) throws
    -> [Float]
{
    let reader = try TensorReader(dump: dump, layer: layer, kind: kind)
    let range = heads ?? 0..<reader.heads
    let columns = range.count * reader.headDim
    let tokens = dump.shape.maxTokens
    var rows = [Float](repeating: .nan, count: tokens * columns)
    try rows.withUnsafeMutableBufferPointer { out in
        for start in stride(from: 0, to: tokens, by: step) {
            try reader.read(
                sequence: 0, start: start, count: min(step, tokens - start), heads: range, into: out, row: start)
        }
    }
    return rows
}

private func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

@Suite struct SafetensorsInputTests {
    @Test func singleFileReadsAsTheSameArraysInHDF5() throws {
        let safetensors = try Dump(path: SafetensorsFixtures.path("single.safetensors"))
        let hdf5 = try Dump(path: SafetensorsFixtures.path("single.h5"))
        #expect(safetensors.shape == hdf5.shape)
        #expect(safetensors.layerNumbers == [0, 1, 2])
        #expect(safetensors.format == .float16)
        #expect(safetensors.layout.style == .perLayer)
        #expect(safetensors.attributes["model"] == "toy" && safetensors.attributes["revision"] == "r1")
        // The tensors' bytes, as the header places them (3 layers × 2 kinds × 4·96·16 halves).
        #expect(safetensors.bytesOnDisk == 3 * 2 * 4 * 96 * 16 * 2)
        for layer in safetensors.layerNumbers {
            for kind in [TensorKind.key, .value] {
                let a = try readRows(safetensors, layer: layer, kind: kind, step: 37)
                let b = try readRows(hdf5, layer: layer, kind: kind, step: 96)
                #expect(sameBits(a, b), "layer \(layer) \(kind)")
            }
        }
        // One file: its own SHA-256.
        #expect(safetensors.sourceFiles == [SafetensorsFixtures.path("single.safetensors")])
        #expect(try safetensors.sha256() == SHA256.hex(ofFileAt: SafetensorsFixtures.path("single.safetensors")))
    }

    @Test func vllmFolderSplitsKeysAndValuesAsNumpyDoes() throws {
        let folder = SafetensorsFixtures.path("vllm")
        let dump = try Dump(path: folder)
        #expect(dump.layerNumbers == [0, 1, 2, 3])
        #expect(dump.shape.kvHeads == 4 && dump.shape.headDim == 16 && dump.shape.maxTokens == 80)
        #expect(dump.format == .bfloat16)
        #expect(dump.attributes["num_kv_heads"] == "4")
        #expect(dump.storedTensors.first?.path == "/model.layers.0.self_attn.attn/key")
        #expect(dump.storedTensors.first?.axes == "tc")
        for layer in dump.layerNumbers {
            let expected = try SafetensorsFixtures.floats("vllm/layer\(layer).f32")
            try #require(expected.count == 2 * 80 * 64)
            let keys = try readRows(dump, layer: layer, kind: .key, step: 23)
            let values = try readRows(dump, layer: layer, kind: .value, step: 80)
            #expect(sameBits(keys, Array(expected[0..<(80 * 64)])), "layer \(layer) keys")
            #expect(sameBits(values, Array(expected[(80 * 64)...])), "layer \(layer) values")
            // Heads 1 and 2 of the merged channels: columns 16..<48 of each row.
            let part = try readRows(dump, layer: layer, kind: .key, heads: 1..<3, step: 11)
            let want = (0..<80).flatMap { expected[($0 * 64 + 16)..<($0 * 64 + 48)] }
            #expect(sameBits(part, want), "layer \(layer) heads 1..<3")
        }
        // The files in byte order of their names; the digest is that of their bytes one after another.
        let names = (0..<4).map { "\(folder)/model.layers.\($0).self_attn.attn.safetensors" }
        #expect(dump.sourceFiles == names)
        var joined = Data()
        for name in names { joined += try Data(contentsOf: URL(fileURLWithPath: name)) }
        let concatenated = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try joined.write(to: concatenated)
        defer { try? FileManager.default.removeItem(at: concatenated) }
        #expect(try dump.sha256() == SHA256.hex(ofFileAt: concatenated.path))
    }

    @Test func vllmFolderWithHeadsApartReadsTHD() throws {
        let dump = try Dump(path: SafetensorsFixtures.path("vllm4d"))
        #expect(dump.layerNumbers == [0, 1])
        #expect(dump.shape.kvHeads == 2 && dump.shape.headDim == 8 && dump.format == .float16)
        for layer in dump.layerNumbers {
            let expected = try SafetensorsFixtures.floats("vllm4d/layer\(layer).f32")
            #expect(sameBits(try readRows(dump, layer: layer, kind: .key, step: 7), Array(expected[0..<640])))
            #expect(sameBits(try readRows(dump, layer: layer, kind: .value, step: 40), Array(expected[640...])))
        }
    }

    @Test func float32ReadsBackBitForBit() throws {
        let dump = try Dump(path: SafetensorsFixtures.path("f32.safetensors"))
        #expect(dump.format == .float32)
        let expected = try SafetensorsFixtures.floats("f32.f32")
        var got: [Float] = []
        for layer in dump.layerNumbers {
            for kind in [TensorKind.key, .value] { got += try readRows(dump, layer: layer, kind: kind, step: 5) }
        }
        #expect(sameBits(got, expected))
        #expect(got.contains { $0 == 0 && $0.sign == .minus } && got.contains { $0.isSubnormal })
    }

    /// A file recognised by its content (no `.safetensors` in its name) opens the same way.
    @Test func contentWithoutTheExtensionIsRecognised() throws {
        let (folder, path) = try SafetensorsFixtures.copy("f32.safetensors")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let renamed = folder + "/dump.bin"
        try FileManager.default.moveItem(atPath: path, toPath: renamed)
        #expect(try DumpSource.resolve(renamed) == .safetensors(files: [renamed], inFolder: false))
        #expect(try Dump(path: renamed).layerNumbers == [0, 1])
        #expect(
            try DumpSource.resolve(SafetensorsFixtures.path("single.h5"))
                == .hdf5(SafetensorsFixtures.path("single.h5")))
    }

    @Test func aLayerFileRewrittenDuringTheRunIsCaught() throws {
        let (folder, path) = try SafetensorsFixtures.copy("vllm")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = try Dump(path: path)
        try dump.checkUnchanged()
        // Shortened while being read: libhdf5 would read zeros past the end; the size check refuses the run.
        let layer = path + "/model.layers.2.self_attn.attn.safetensors"
        #expect(truncate(layer, 1000) == 0)
        #expect {
            try dump.checkUnchanged()
        } throws: { error in
            let error = error as? DumpError
            return error?.category == .changedDuringRun
                && error?.message.contains("model.layers.2.self_attn.attn.safetensors: size") == true
        }
        // Opening it now is refused at once (the header says the file is longer).
        #expect(throws: DumpError.self) { try Dump(path: path) }
    }

    // MARK: headers

    private func parse(_ json: String, dataBytes: Int) throws(DumpError) -> SafetensorsHeader {
        let bytes = Array(json.utf8)
        return try SafetensorsHeader.parse(json: bytes, fileSize: 8 + bytes.count + dataBytes, path: "x.safetensors")
    }

    private func message(_ json: String, dataBytes: Int) -> String? {
        do {
            _ = try parse(json, dataBytes: dataBytes)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func headersAreCheckedBeforeAnyRead() throws {
        let entry = #"{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#
        // Good: tensors in any JSON order, metadata values that are not strings kept as text, an empty tensor.
        let good = try parse(
            #"{"b":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"a":\#(entry),"#
                + #""e":{"dtype":"F32","shape":[0,5],"data_offsets":[32,32]},"#
                + #""__metadata__":{"s":"x","n":3,"f":true,"o":{"nested":1}}}"#, dataBytes: 32)
        #expect(good.tensors.map(\.name) == ["a", "b", "e"])
        #expect(good.metadata == ["s": "x", "n": "3", "f": "true"])
        // Names repeated, even spelled with different escapes.
        #expect(message(#"{"a":\#(entry),"a":\#(entry)}"#, dataBytes: 24)?.contains("'a' twice") == true)
        #expect(message(#"{"a":\#(entry),"\u0061":\#(entry)}"#, dataBytes: 24)?.contains("twice") == true)
        // Offsets backwards, beyond the data, or with bytes nobody owns after the last tensor.
        #expect(
            message(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, dataBytes: 8)?.contains("begin ≤ end")
                == true)
        #expect(message(#"{"a":\#(entry)}"#, dataBytes: 20)?.contains("truncated") == true)
        #expect(message(#"{"a":\#(entry)}"#, dataBytes: 30)?.contains("6 bytes after") == true)
        // Shapes whose product overflows, or with too many dimensions, or offsets of the wrong type.
        let huge = #"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        #expect(message(huge, dataBytes: 8)?.contains("more elements than can be addressed") == true)
        let deep =
            #"{"a":{"dtype":"U8","shape":[\#(Array(repeating: "1", count: 33).joined(separator: ","))],"#
            + #""data_offsets":[0,1]}}"#
        #expect(message(deep, dataBytes: 1)?.contains("33 dimensions") == true)
        #expect(
            message(#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24.5]}}"#, dataBytes: 24)?.contains(
                "not a whole number") == true)
        #expect(message(#"{"a":{"dtype":"F32","shape":[6]}}"#, dataBytes: 24)?.contains("no 'data_offsets'") == true)
        #expect(message(#"{"a":5}"#, dataBytes: 0)?.contains("entry is not an object") == true)
        #expect(message("[]", dataBytes: 0)?.contains("not a JSON object") == true)
        #expect(message("{", dataBytes: 0)?.contains("not valid JSON") == true)
    }

    @Test func vllmShapesOtherThanKeysThenValuesAreRefused() throws {
        func plan(_ shape: [Int], metadata: [String: String] = [:]) -> String? {
            let bytes = shape.reduce(2, *)
            let header = SafetensorsHeader(
                path: "layer.safetensors", headerBytes: 8, fileSize: 16 + bytes,
                tensors: [SafetensorsTensor(name: "kv_cache", dtype: .float16, shape: shape, begin: 0, end: bytes)],
                metadata: metadata)
            do {
                let entries = try SafetensorsCatalogue.plan([header], inFolder: false)
                return "\(entries.map(\.datasetPath)) \(entries.map(\.offset)) \(entries.map { $0.axes ?? "" })"
            } catch {
                return error.message
            }
        }
        #expect(plan([2, 5, 8]) == "[\"/key\", \"/value\"] [16, 96] [\"tc\", \"tc\"]")
        #expect(plan([2, 5, 2, 4]) == "[\"/key\", \"/value\"] [16, 96] [\"thd\", \"thd\"]")
        #expect(plan([5, 576])?.contains("MLA") == true)
        #expect(plan([3, 5, 8])?.contains("expected vLLM's [2, tokens") == true)
        #expect(plan([2, 5, 8], metadata: ["kv_heads": "3"])?.contains("not a multiple of the 3 heads") == true)
    }
}
