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
        // The declared size is checked before anything is read or allocated.
        let dataset = try group.dataset(name)
        let declared = dataset.shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard declared <= (count ?? StateGroup.largestDataset) else {
            throw DumpError(
                .badLayout, "declares \(dataset.shape) values, expected \(count.map(String.init) ?? "fewer")",
                file: file,
                dataset: group.childPath(name))
        }
        // kvstat writes float64 for every real accumulator and int64 for counts: a dataset of another class (an
        // h5py bool or integer where sums belong, say) would convert to numbers no accumulator can hold.
        let floating = T.self == Double.self || T.self == Float.self
        switch dataset.element {
        case .float where floating, .integer where !floating: break
        default:
            throw DumpError(
                .badLayout, "holds \(dataset.element) values, expected \(floating ? "float64" : "int64")", file: file,
                dataset: group.childPath(name))
        }
        let values: [T] = try dataset.readAll()
        if let count, values.count != count {
            throw DumpError(
                .badLayout, "holds \(values.count) values, expected \(count)", file: file,
                dataset: group.childPath(name))
        }
        // Accumulators of finite float32 rows are finite and far below 1e100 (a float32 value squared is below
        // 1.2e77): anything else is a damaged file, not a number to report or to hand to LAPACK.
        if T.self == Double.self || T.self == Float.self,
            let bad = values.firstIndex(where: {
                let v = ($0 as? Double) ?? Double($0 as? Float ?? 0)
                return !(v.isFinite && abs(v) < 1e100)
            })
        {
            throw DumpError(
                .badLayout, "holds a non-finite value at index \(bad)", file: file, dataset: group.childPath(name))
        }
        return values
    }

    /// Most values a dataset of unknown expected size may hold (a full-range norm histogram, the largest lists).
    static let largestDataset = 1 << 20

    /// Reads one integer written as a one-element Int64 dataset; it must be ≥ 0.
    public func count(_ name: String) throws -> Int {
        let value = try read(name, count: 1, as: Int64.self)[0]
        // Counts of tokens or values: at most 2⁵³, so that sums of merged states neither overflow nor lose exactness.
        guard value >= 0, value <= 1 << 53 else {
            throw DumpError(
                .badLayout, "holds a count \(value) outside 0…2⁵³", file: file, dataset: group.childPath(name))
        }
        return Int(value)
    }
}
