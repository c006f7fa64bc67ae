// One layer's (or layer pair's) group in a state file, as statistics see it: named datasets written and read
// back with their sizes checked, so a statistic's encoding lives in its own file.
import HDF5Kit

/// A group of a state file; every read checks the count it expects and names the dataset when it differs.
public struct StateGroup {
    let group: HDF5Group
    /// The state file, for messages.
    let file: String

    init(_ group: HDF5Group, file: String) {
        self.group = group
        self.file = file
    }

    /// Writes `values` as the dataset `name` of `shape`.
    public func write<T: HDF5Storable>(_ name: String, _ values: [T], shape: [Int]? = nil) throws {
        try group.writeDataset(name, shape: shape ?? [values.count], values: values)
    }

    /// Reads the dataset `name`, which must hold `count` values (nil: any number).
    public func read<T: HDF5Storable & Numeric>(
        _ name: String, count: Int? = nil, as type: T.Type = T.self
    ) throws -> [T] {
        guard group.exists(name) else {
            throw DumpError(.badLayout, "state file lacks this dataset", file: file, dataset: group.childPath(name))
        }
        let values: [T] = try group.dataset(name).readAll()
        if let count, values.count != count {
            throw DumpError(
                .badLayout, "holds \(values.count) values, expected \(count)", file: file,
                dataset: group.childPath(name))
        }
        return values
    }

    /// Reads one integer written as a one-element Int64 dataset; it must be ≥ 0.
    public func count(_ name: String) throws -> Int {
        let value = try read(name, count: 1, as: Int64.self)[0]
        guard value >= 0 else {
            throw DumpError(.badLayout, "holds a negative count \(value)", file: file, dataset: group.childPath(name))
        }
        return Int(value)
    }
}
