// Channel axes that merge heads × head_dim (`c`), per-kind axis orders in layout files, layout hints, and
// Hugging Face's forward-hook/cache pair: the rows read equal numpy's reshape of the same arrays
// (Tests/Fixtures/make_layout_dumps.py writes both), and each way of getting the head count wrong is one error.
import Foundation
import Testing

@testable import KVStat

/// The layout fixtures, generated once per test process into a temporary folder.
enum LayoutDumps {
    static let directory = Fixtures.generated(by: "make_layout_dumps.py", prefix: "kvstat-layouts")

    static func path(_ name: String) -> String { directory + "/" + name }

    /// numpy's rows of layer 0 for each kind, as the fixture script wrote them.
    static func rows(_ name: String) throws -> [String: [Double]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name + ".rows.json")))
        return try JSONDecoder().decode([String: [Double]].self, from: data)
    }
}

@Suite struct MergedHeadsTests {
    /// Every token row of `kind` in the dump's first layer, heads `heads` (all when nil), sequence by sequence.
    func readRows(_ dump: Dump, _ kind: TensorKind, heads: Range<Int>? = nil) throws -> [Float] {
        let reader = try TensorReader(dump: dump, layer: dump.layerNumbers[0], kind: kind)
        let headRange = heads ?? 0..<reader.heads
        let columns = headRange.count * reader.headDim
        let tokens = dump.shape.maxTokens
        var rows = [Float](repeating: .nan, count: dump.shape.sequences * tokens * columns)
        try rows.withUnsafeMutableBufferPointer { buffer in
            for sequence in 0..<dump.shape.sequences {
                try reader.read(
                    sequence: sequence, start: 0, count: tokens, heads: headRange, into: buffer, row: sequence * tokens)
            }
        }
        return rows
    }

    @Test(
        arguments: [
            ("hf_pair", nil), ("merged_heads_attr", nil), ("merged_heads_unknown", "kv_heads_hint.json"),
            ("custom_per_kind", "custom_per_kind.layout.json"),
        ] as [(String, String?)])
    func rowsEqualNumpysReshape(file: String, layout: String?) throws {
        let spec = try layout.map { name throws(DumpError) in try LayoutSpec.load(LayoutDumps.path(name)) }
        let dump = try Dump(path: LayoutDumps.path(file + ".h5"), layout: spec)
        #expect(dump.shape.kvHeads == 3 && dump.shape.headDim == 4)
        for (name, expected) in try LayoutDumps.rows(file) {
            let kind = try #require(TensorKind(rawValue: name))
            let rows = try readRows(dump, kind)
            #expect(rows.map(Double.init) == expected, "\(file) \(name)")
            // One head of a merged axis is one contiguous run of head_dim channels in each row.
            let middle = try readRows(dump, kind, heads: 1..<2)
            let columns = 3 * 4
            let slice = (0..<(expected.count / columns)).flatMap { row in
                expected[(row * columns + 4)..<(row * columns + 8)]
            }
            #expect(middle.map(Double.init) == slice, "\(file) \(name) head 1")
        }
    }

    @Test func huggingFacePairIsKeysPreRopeKeysAndValues() throws {
        let dump = try Dump(path: LayoutDumps.path("hf_pair.h5"))
        #expect(dump.kinds == [.key, .value, .keyPreRope])
        #expect(dump.layerNumbers == [0, 1])
        // q_proj (pre-RoPE queries) and v_proj (the values again) are named once each, not read.
        #expect(dump.layout.ignored.count == 2)
        #expect(dump.layout.ignored.contains { $0.contains("q_proj") && $0.contains("before RoPE") })
        #expect(dump.layout.ignored.contains { $0.contains("v_proj") && $0.contains("1 more") })
        #expect(DumpSummary(dump).ignored == dump.layout.ignored)
    }

    @Test(
        arguments: [
            ("merged_heads_unknown.h5", nil, "head count is unknown"),
            ("merged_heads_unknown.h5", "kv_heads_wrong.json", "kv_heads says 5 heads"),
            ("merged_heads_bad_count.h5", nil, "'heads' attribute says 5 heads"),
            ("merged_heads_float_attr.h5", nil, "not one integer"),
            ("custom_per_kind.h5", "per_kind_missing.layout.json", "lacks key_pre_rope"),
            ("custom_per_kind.h5", "hints_with_key.layout.json", "without all of key, value and axes"),
            ("custom_per_kind.h5", "bad_c_axes.layout.json", "in place of h and d"),
        ] as [(String, String?, String)])
    func headCountMistakesAreOneError(file: String, layout: String?, fragment: String) throws {
        let error = #expect(throws: DumpError.self, "\(file) with \(layout ?? "no layout") was accepted") {
            let spec = try layout.map { try LayoutSpec.load(LayoutDumps.path($0)) }
            _ = try Dump(path: LayoutDumps.path(file), layout: spec)
        }
        #expect(error?.category == .badLayout, "\(error?.description ?? "")")
        #expect(error?.description.contains(fragment) == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("\n") == false)
    }

    /// Two kinds reading one dataset under different axis orders: each reading is checked (it was once a trap).
    @Test func oneDatasetReadTwoWaysIsCheckedBothWays() throws {
        let spec = try LayoutSpec.load(LayoutDumps.path("shared_two_orders.layout.json"))
        let error = #expect(throws: DumpError.self) {
            _ = try Dump(path: LayoutDumps.path("shared_dataset.h5"), layout: spec)
        }
        #expect(error?.category == .badData)
        #expect(error?.description.contains("/x0: has 3 dimensions [1, 6, 12] but its axis order 'dbht' has 4") == true)
    }

    @Test func axisOrdersWithMergedChannels() throws {
        for good in ["btc", "tc", "lbtc", "ctb"] { #expect((try? AxisOrder(good))?.mergesHeads == true, "\(good)") }
        for bad in ["bhtc", "btcd", "bc", "tcc"] { #expect((try? AxisOrder(bad)) == nil, "\(bad)") }
        let location = TensorLocation(datasetPath: "/k", axes: try AxisOrder("btc"), layerIndex: nil, heads: 8)
        let extents = try #require(location.extents(of: [2, 7, 1024]))
        #expect(extents.batch == 2 && extents.heads == 8 && extents.tokens == 7 && extents.headDim == 128)
        var unknown = location
        unknown.heads = nil
        #expect(unknown.extents(of: [2, 7, 1024]) == nil)
    }
}
