// Datasets with external storage in an in-memory HDF5 file opened read-only: elements come from the raw bytes
// of another file at an offset, the file is never written, and half floats are IEEE binary16.
import Foundation
import Testing

@testable import HDF5Kit

@Suite struct ExternalStorageTests {
    @Test func externalBytesReadThroughAnInMemoryCatalogue() throws {
        // 16 bytes of header, then 24 float32 values, then 8 float16 values (1.0, -2.0, …).
        let raw = NSTemporaryDirectory() + "kvstat-external-\(UUID().uuidString).bin"
        defer { unlink(raw) }
        var bytes = Data(repeating: 0xAB, count: 16)
        let floats = (0..<24).map { Float($0) * 0.5 - 3 }
        floats.withUnsafeBytes { bytes += Data($0) }
        let halves: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x8000, 0x7BFF, 0x3555, 0x0400, 0xFBFF]
        halves.withUnsafeBytes { bytes += Data($0) }
        try bytes.write(to: URL(fileURLWithPath: raw))
        let before = try Data(contentsOf: URL(fileURLWithPath: raw))

        let image = try HDF5MemoryImage.build(name: "catalogue") { file in
            let root = try file.root()
            try root.createExternalDataset(
                "a.b/x", element: .float32, shape: [4, 6], externalFile: raw, offset: 16, bytes: 96)
            try root.createExternalDataset(
                "h", element: .float16, shape: [8], externalFile: raw, offset: 112, bytes: 16)
            try root.createExternalDataset(
                "empty", element: .integer(bits: 64, signed: true), shape: [0, 3], externalFile: raw, offset: 0,
                bytes: 0)
            #expect(throws: HDF5Error.self) {
                try root.createExternalDataset(
                    "bad", element: .float32, shape: [5], externalFile: raw, offset: 0, bytes: 4)
            }
        }
        let file = try HDF5File.open(image: image, label: "my/input")
        #expect(file.path == "my/input")
        let x = try file.root().dataset("a.b/x")
        #expect(x.shape == [4, 6] && x.storageLayout == .contiguous && x.externalFiles == [raw])
        #expect(x.writtenState == .fully && x.contiguousOffset == nil && x.storageBytes == 96)
        let read: [Float] = try x.readAll()
        #expect(read == floats)
        let h = try file.root().dataset("h")
        #expect(h.floatFields?.isIEEEHalf == true && h.isLittleEndian)
        var raws = [UInt16](repeating: 0, count: 8)
        try raws.withUnsafeMutableBytes { try h.read(start: [0], count: [8], as: .fileType, into: $0) }
        #expect(raws == halves)
        let asFloat: [Float] = try h.readAll()
        #expect(asFloat[0] == 1 && asFloat[1] == -2 && asFloat[4] == 65504)
        #expect(try file.root().dataset("empty").shape == [0, 3])
        // Creating and reading never wrote the external file.
        #expect(try Data(contentsOf: URL(fileURLWithPath: raw)) == before)
        // Shortened later, libhdf5 reads zeros past its end (why callers check sizes): documented, not an error.
        #expect(truncate(raw, 16 + 48) == 0)
        let shortened: [Float] = try x.readAll()
        #expect(Array(shortened.prefix(12)) == Array(floats.prefix(12)) && shortened.suffix(12).allSatisfy { $0 == 0 })
        // Removed, it is a read error.
        unlink(raw)
        #expect(throws: HDF5Error.self) { let _: [Float] = try x.readAll() }
    }
}
