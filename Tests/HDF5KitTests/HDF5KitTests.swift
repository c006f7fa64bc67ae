// HDF5Kit against libhdf5: round trips of datasets and attributes, hyperslab reads, filters, and errors.
import Foundation
import Testing

@testable import HDF5Kit

@Suite struct HDF5KitTests {
    let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hdf5kit-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    @Test func datasetRoundTripAndHyperslab() throws {
        let path = directory.appendingPathComponent("a.h5").path
        let values = (0..<(2 * 3 * 4)).map { Float($0) * 0.5 }
        do {
            let file = try HDF5File.create(path)
            let group = try file.root().createGroup("layers/0")
            try group.writeDataset("key", shape: [2, 3, 4], values: values, chunks: [1, 3, 2], gzipLevel: 4)
            try group.writeDataset("lengths", shape: [2], values: [Int64(3), 1])
        }
        let file = try HDF5File.open(path)
        let root = try file.root()
        #expect(root.kind(of: "layers/0/key") == .dataset)
        #expect(root.kind(of: "layers/0") == .group)
        #expect(root.kind(of: "layers/9/key") == nil)
        let dataset = try root.dataset("layers/0/key")
        #expect(dataset.shape == [2, 3, 4])
        #expect(dataset.element == .float(bits: 32))
        #expect(dataset.chunkShape == [1, 3, 2])
        #expect(dataset.filters.map(\.name) == ["shuffle", "gzip"])
        #expect(dataset.filters.allSatisfy { $0.available })
        #expect(try dataset.readAll(as: Float.self) == values)
        // [1, 1..<3, 2..<4] of a [2,3,4] array: rows (1,1,2..3) and (1,2,2..3).
        var slab = [Float](repeating: -1, count: 4)
        try slab.withUnsafeMutableBytes {
            try dataset.read(start: [1, 1, 2], count: [1, 2, 2], as: .float32, into: $0)
        }
        #expect(slab == [18, 19, 22, 23].map { $0 * 0.5 })
        var wide = [Double](repeating: 0, count: 2)
        try wide.withUnsafeMutableBytes {
            try dataset.read(start: [0, 0, 0], count: [1, 1, 2], as: .float64, into: $0)
        }
        #expect(wide == [0, 0.5])
        #expect(try root.dataset("layers/0/lengths").readAll(as: Int64.self) == [3, 1])
        #expect(try root.group("layers").memberNames() == ["0"])
        #expect(throws: HDF5Error.self) {
            try slab.withUnsafeMutableBytes {
                try dataset.read(start: [1, 2, 2], count: [1, 2, 2], as: .float32, into: $0)
            }
        }
    }

    @Test func attributesRoundTrip() throws {
        let path = directory.appendingPathComponent("attrs.h5").path
        do {
            let root = try HDF5File.create(path).root()
            try root.setAttribute("model", "sentence-transformers/all-MiniLM-L6-v2 — ünïcode")
            try root.setAttribute("scale", [0.25])
            try root.setAttribute("ranks", [4, 8, 16])
            try root.setAttribute("model", "replaced")
        }
        let root = try HDF5File.open(path).root()
        #expect(try root.attributeNames().sorted() == ["model", "ranks", "scale"])
        #expect(try root.stringAttribute("model") == "replaced")
        #expect(try root.numericAttribute("scale") == [0.25])
        #expect(try root.numericAttribute("ranks") == [4, 8, 16])
        #expect(try root.stringAttribute("scale") == nil)
        #expect(try root.numericAttribute("model") == nil)
        #expect(try root.stringAttribute("absent") == nil)
    }

    /// h5py writes both variable-length strings and, for numpy bytes, fixed-length NUL-padded ones.
    @Test func readsAttributesWrittenByH5py() throws {
        let dumps = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dumps")
        let fixed = try HDF5File.open(dumps.appendingPathComponent("stacked_4d.h5").path).root()
        #expect(try fixed.stringAttribute("dtype") == "bfloat16")
        let variable = try HDF5File.open(dumps.appendingPathComponent("axes_attr_bthd.h5").path).root()
        #expect(try variable.dataset("layer_00/key").stringAttribute("axes") == "bthd")
        let lzf = try HDF5File.open(dumps.appendingPathComponent("bad_lzf.h5").path).root().dataset("layer_00/key")
        #expect(lzf.filters.contains { $0.name == "lzf" && !$0.available })
        var buffer = [Float](repeating: 0, count: lzf.shape.reduce(1, *))
        let error = #expect(throws: HDF5Error.self) {
            try buffer.withUnsafeMutableBytes {
                try lzf.read(start: lzf.shape.map { _ in 0 }, count: lzf.shape, as: .float32, into: $0)
            }
        }
        #expect(error?.code == .unavailableFilter)
        #expect(error?.description.contains("h5repack -f GZIP=4") == true)
    }

    @Test func openErrorsAreDistinct() throws {
        let missing = #expect(throws: HDF5Error.self) {
            try HDF5File.open(directory.appendingPathComponent("none.h5").path)
        }
        #expect(missing?.code == .fileNotFound)
        let text = directory.appendingPathComponent("text.h5")
        try Data("not hdf5\n".utf8).write(to: text)
        let notHDF5 = #expect(throws: HDF5Error.self) { try HDF5File.open(text.path) }
        #expect(notHDF5?.code == .notHDF5)
        #expect(notHDF5?.description == "\(text.path): not an HDF5 file (no HDF5 signature found)")
        let root = try HDF5File.create(directory.appendingPathComponent("empty.h5").path).root()
        let absent = #expect(throws: HDF5Error.self) { try root.dataset("nope") }
        #expect(absent?.code == .objectNotFound)
        #expect(absent?.object == "/nope")
    }
}
