// Files built in memory (core driver, no backing store) and written by the caller: the bytes are a complete
// HDF5 file that libhdf5 (and h5py) open, large images grow without trouble, and a failing body is an error
// with nothing left behind.
import Foundation
import Testing

@testable import HDF5Kit

@Suite struct HDF5MemoryImageTests {
    @Test func anImageWrittenToDiskOpensAndReadsBack() throws {
        let values = (0..<(3 * 1000 * 100)).map { Double($0) * 0.25 }  // 2.4 MB: the buffer grows past its first block
        let image = try HDF5MemoryImage.build(name: "memory-test") { file in
            let root = try file.root()
            try root.setAttribute("format", "test/1")
            let group = try root.createGroup("a/b")
            try group.writeDataset("x", shape: [3, 1000, 100], values: values)
        }
        #expect(image.count > values.count * 8 && image.count < values.count * 8 + (1 << 20))
        let path = NSTemporaryDirectory() + "memory-image-\(UUID().uuidString).h5"
        defer { unlink(path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(image.bytes)))
        let file = try HDF5File.open(path)
        #expect(try file.root().stringAttribute("format") == "test/1")
        let read: [Double] = try file.root().dataset("a/b/x").readAll()
        #expect(read == values)
        // Nothing was created under the image's name.
        #expect(!FileManager.default.fileExists(atPath: "memory-test"))
    }

    @Test func aFailingBodyIsAnErrorAndTheLibraryStaysUsable() throws {
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            _ = try HDF5MemoryImage.build(name: "failing") { file in
                try file.root().writeDataset("x", shape: [4], values: [1.0, 2, 3, 4])
                throw Stop()
            }
        }
        let again = try HDF5MemoryImage.build(name: "failing") { try $0.root().setAttribute("ok", "yes") }
        #expect(again.count > 0)
    }
}
