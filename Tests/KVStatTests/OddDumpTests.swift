// Odd and hostile dumps (Tests/Fixtures/make_odd_dumps.py, written at test time): each is refused with one
// clear error naming the dataset, or read correctly — layer numbers as in the file, 0/1 masks, integral
// lengths, unwritten storage, cycles, virtual sources, a file changing under the reader.
import Foundation
import HDF5Kit
import Testing

@testable import KVStat

/// The odd dumps, generated once per test process into a temporary folder.
enum OddDumps {
    static let directory = Fixtures.generated(by: "make_odd_dumps.py", prefix: "kvstat-odd")

    static func path(_ name: String) -> String { directory + "/" + name }
}

/// One file that must be refused: its error category and fragments of its one-line message.
struct Refusal: CustomTestStringConvertible, Sendable {
    var file: String
    var layout: String?
    var category: DumpError.Category
    var fragments: [String]
    var testDescription: String { layout ?? file }

    init(_ file: String, layout: String? = nil, _ category: DumpError.Category = .badData, _ fragments: String...) {
        (self.file, self.layout, self.category, self.fragments) = (file, layout, category, fragments)
    }
}

/// Token rows (t-major, then h, then d) of a `[1, 2, 6, 4]` bhtd array: what the reader must return.
func rowsOf(bhtd stored: [Float], heads: Int = 2, tokens: Int = 6, dim: Int = 4) -> [Float] {
    var rows: [Float] = []
    for t in 0..<tokens {
        for h in 0..<heads {
            for d in 0..<dim { rows.append(stored[(h * tokens + t) * dim + d]) }
        }
    }
    return rows
}

@Suite struct OddDumpTests {
    static let refusals: [Refusal] = [
        Refusal("stacked_layer_mismatch.h5", .badData, "/values", "has 3 layers", "/keys has 2"),
        Refusal("stacked_query_mismatch.h5", .badData, "/queries", "has 3 layers", "/keys has 2"),
        Refusal("stacked_zero_layers.h5", .badData, "/keys", "0 layers"),
        Refusal("ambiguous.h5", .badLayout, "ambiguous layout", "/keys,/values", "/layer_00/key", "--layout FILE"),
        Refusal("mask_half.h5", .badData, "/attention_mask", "holds 0.5 at [0, 2]", "only 0"),
        Refusal("mask_int_two.h5", .badData, "/attention_mask", "holds 2 at [0, 2]"),
        Refusal("mask_huge.h5", .badData, "/attention_mask", "shape [1, 1099511627776]", "expected [1, 6]"),
        Refusal("mask_unwritten.h5", .badData, "/attention_mask", "declared but never written"),
        Refusal("lengths_fraction.h5", .badData, "/lengths", "10.5", "whole numbers"),
        Refusal("lengths_rank2.h5", .badData, "/lengths", "shape [2, 1]", "expected [2]"),
        Refusal(
            "never_written.h5", .badData, "/layer_00/key", "declared but never written (it holds only its fill value)"),
        Refusal("never_written_contiguous.h5", .badData, "/layer_00/key", "declared but never written"),
        Refusal("huge_unwritten.h5", .badData, "/layer_00/key", "declared but never written"),
        Refusal("partial_chunks.h5", .badData, "/layer_00/key", "has unwritten chunks", "2 of 3"),
        Refusal(
            "partial_padding_bad.h5", .badData, "/layer_00/key", "has unwritten chunks", "tokens 4–7 of sequence 0"),
        Refusal("vds_missing.h5", .badData, "/layer_00/key", "virtual", "vds_missing_source.h5", "missing"),
        Refusal("scalar_root_key.h5", .badLayout, "/key", "0 dimensions"),
        Refusal("scalar_layer_key.h5", .badData, "/layer_00/key", "0-D"),
        Refusal("zero_heads.h5", .badData, "/layer_00/key", "empty batch, head or head_dim"),
        Refusal("huge_rank.h5", .badData, "/layer_00/key", "32-D"),
        Refusal("string_key.h5", .badData, "/layer_00/key", "stores string"),
        Refusal("axes_not_string.h5", .badLayout, "/layer_00/key", "'axes' attribute that is not a string"),
        Refusal("duplicate_kinds.h5", .badLayout, "/layer_00/k", "/layer_00/key", "ambiguous"),
        Refusal("only_key.h5", .badLayout, "/layer_00", "layer 0 has no value tensor"),
        Refusal(
            "custom_thd.h5", layout: "typo.layout.yaml", .badLayout, "typo.layout.yaml", "unknown key 'lenghts'",
            "known keys are"),
        Refusal(
            "custom_thd.h5", layout: "typo.layout.json", .badLayout, "unknown keys 'atention_mask', 'lenghts'",
            "attention_mask"),
        Refusal("custom_thd.h5", layout: "wide.layout.yaml", .badLayout, "{layer:09999999}", "from 1 to 12"),
        Refusal("custom_thd.h5", layout: "negative.layout.json", .badLayout, "'layers' is -1"),
        Refusal("custom_thd.h5", layout: "mixed.layout.json", .badLayout, "placeholder", "value"),
    ]

    /// Opening (and, when it opens, scanning) fails with one line naming the dataset and the problem.
    @Test(arguments: refusals)
    func refused(_ case_: Refusal) throws {
        let file = case_.layout == nil ? OddDumps.path(case_.file) : Fixtures.path(case_.file)
        let error = #expect(throws: DumpError.self) {
            let spec = try case_.layout.map { path throws(DumpError) in try LayoutSpec.load(OddDumps.path(path)) }
            _ = try DumpScan(dump: try Dump(path: file, layout: spec))
        }
        let line = try #require(error).description
        #expect(error?.category == case_.category, "\(line)")
        #expect(!line.contains("\n"))
        for fragment in case_.fragments {
            #expect(line.contains(fragment), "'\(line)' lacks '\(fragment)'")
        }
    }

    @Test func layerNumbersAreTheFiles() throws {
        let dump = try Dump(path: OddDumps.path("gaps_layers.h5"))
        #expect(dump.layerNumbers == [0, 5, 7])
        #expect(dump.shape.layers == 3)
        #expect(DumpSummary(dump).layerNumbers == [0, 5, 7])
        // Layer 5 is /layer_05, read through HDF5 directly as the reference.
        let root = try HDF5File.open(dump.path).root()
        let stored: [Float] = try root.dataset("layer_05/key").readAll()  // [1, 2, 6, 4] bhtd
        let matrix = try wholeMatrix(dump, layer: 5, kind: .key)
        #expect(matrix.values == rowsOf(bhtd: stored))
        let missing = #expect(throws: DumpError.self) { try TensorReader(dump: dump, layer: 1, kind: .key) }
        #expect(missing?.description.contains("has no layer 1 (its layers are 0,5,7)") == true)
        // Statistics and scans speak file numbers too.
        var options = AnalysisOptions()
        options.layers = [5, 7]
        options.sections = [.spectra, .similarity]
        let state = try Analyzer.accumulate(dump, options: options)
        #expect(state.layers == [5, 7])
        let report = try StatsFinisher.finish(state, version: "test")
        #expect(report.layers.map(\.layer) == [5, 7])
        options.layers = [1]
        #expect(throws: DumpError.self) { try Analyzer.accumulate(dump, options: options) }
        #expect(Set(try DumpScan(dump: dump).nonFinite.keys).isEmpty)
    }

    @Test func stackedAndTemplateLayersCountFromZero() throws {
        #expect(try Dump(path: Fixtures.path("stacked_5d.h5")).layerNumbers == [0, 1])
        let spec = try LayoutSpec.load(Fixtures.path("custom_thd.layout.json"))
        #expect(try Dump(path: Fixtures.path("custom_thd.h5"), layout: spec).layerNumbers == [0, 1])
    }

    /// Bool and float masks of 0/1 give the runs written out by hand from the mask; integral float lengths work.
    @Test(arguments: ["mask_bool.h5", "mask_float.h5"])
    func masksOfZeroAndOne(file: String) throws {
        let dump = try Dump(path: OddDumps.path(file))
        // Mask [[0, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]: tokens 1–4 of sequence 0 and 0–2 of sequence 1.
        let expected = TokenRuns(
            runs: [TokenRun(sequence: 0, start: 1, count: 4), TokenRun(sequence: 1, start: 0, count: 3)],
            lengths: [4, 3])
        #expect(dump.tokenRuns == expected)
        #expect(dump.tokenRuns.lengths == [4, 3])
    }

    @Test func paddingThatIsRight() throws {
        #expect(try Dump(path: OddDumps.path("lengths_float_ok.h5")).tokenRuns.lengths == [5, 3])
        // Only padding chunks were never written: fine, and the valid tokens read.
        let partial = try Dump(path: OddDumps.path("partial_padding_ok.h5"))
        #expect(partial.shape.tokens == 4)
        #expect(try DumpScan(dump: partial).values == 2 * 4 * 8)
    }

    /// A 5 KB file declaring 2^40 tokens is refused from metadata alone, at once.
    @Test func hugeUnwrittenIsRefusedInstantly() throws {
        let clock = ContinuousClock()
        let elapsed = clock.measure { _ = try? Dump(path: OddDumps.path("huge_unwritten.h5")) }
        #expect(elapsed < .seconds(1))
    }

    /// `f["layers/0/sub"] = f["layers"]` and a soft link to the parent: one layer, found without looping.
    @Test(.timeLimit(.minutes(10))) func cyclesAreWalkedOnce() throws {
        let dump = try Dump(path: OddDumps.path("cycle.h5"))
        #expect(dump.layerNumbers == [0])
        #expect(dump.storedTensors.map(\.path) == ["/layers/0/key", "/layers/0/value"])
        #expect(try DumpScan(dump: dump).values == 2 * 6 * 8)
    }

    @Test func presentVirtualSourceIsRead() throws {
        let dump = try Dump(path: OddDumps.path("vds_present.h5"))
        let source: [Float] = try HDF5File.open(OddDumps.path("vds_present_source.h5")).root().dataset("data").readAll()
        let matrix = try wholeMatrix(dump, layer: 0, kind: .key)
        #expect(matrix.values == rowsOf(bhtd: source))
    }

    @Test func rootDatasetsWithoutLayerAxisAreOneLayer() throws {
        let dump = try Dump(path: OddDumps.path("root_one_layer.h5"))
        #expect(dump.layerNumbers == [0])
        #expect(dump.shape.kvHeads == 2 && dump.shape.maxTokens == 6)
    }

    /// bfloat16 declared as an HDF5 float type is decoded as bfloat16, not as IEEE half.
    @Test func bfloat16FloatTypeIsDecoded() throws {
        let dump = try Dump(path: OddDumps.path("bfloat16_float_type.h5"))
        #expect(dump.format == .bfloat16)
        let npy = try Data(contentsOf: URL(fileURLWithPath: OddDumps.path("bfloat16_float_type.npy")))
        let stored = npy.suffix(48 * 4).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }  // [1, 2, 6, 4]
        let matrix = try wholeMatrix(dump, layer: 0, kind: .key)
        #expect(matrix.values == rowsOf(bhtd: stored))
    }

    /// A file rewritten (new mtime) or replaced (another inode) after opening: checkUnchanged and sha256 throw.
    @Test func changesAfterOpeningAreCaught() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvstat-change-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/dump.h5"
        try FileManager.default.copyItem(atPath: OddDumps.path("gaps_layers.h5"), toPath: path)
        let dump = try Dump(path: path)
        try dump.checkUnchanged()
        _ = try dump.sha256()
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: path)
        let touched = #expect(throws: DumpError.self) { try dump.checkUnchanged() }
        #expect(touched?.category == .changedDuringRun)
        #expect(touched?.description.contains("changed while it was being read (mtime") == true)
        #expect(touched?.description.hasSuffix("nothing was written") == true)
        #expect((#expect(throws: DumpError.self) { try dump.sha256() })?.category == .changedDuringRun)

        let reopened = try Dump(path: path)
        try FileManager.default.copyItem(atPath: OddDumps.path("gaps_layers.h5"), toPath: folder + "/other.h5")
        #expect(rename(folder + "/other.h5", path) == 0)  // same bytes, another inode
        let replaced = #expect(throws: DumpError.self) { try reopened.checkUnchanged() }
        #expect(replaced?.description.contains("replaced by another file") == true)
    }

    @Test func layoutPlaceholdersAreChecked() throws {
        let good = LayoutSpec(key: "/a/{layer:03}/k", value: "/a/{layer:03}/v", axes: "thd")
        try good.check()
        #expect(LayoutSpec.expand(good.key ?? "", layer: 7) == "/a/007/k")
        // expand itself never builds an absurd string, whatever it is given.
        #expect(LayoutSpec.expand("{layer:0999999999999}", layer: 1).count == LayoutSpec.maxPadding)
        var bad = good
        bad.key = "/a/{layer:5}/k"
        #expect(throws: DumpError.self) { try bad.check() }
        bad.key = "/a/{layer"
        #expect(throws: DumpError.self) { try bad.check() }
    }
}
