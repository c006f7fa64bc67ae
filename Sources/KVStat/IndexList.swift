// Lists of layer or sequence numbers as people type them (`0-7,12`), parsed and printed back compactly.

/// Sorted, unique non-negative integers written as comma-separated numbers and inclusive ranges.
public enum IndexList {
    /// Parses `0-7,12` into sorted unique numbers; nil when a part is not a number or a range `a-b`, a ≤ b.
    public static func parse(_ text: String) -> [Int]? {
        var numbers: Set<Int> = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            switch bounds.count {
            case 1 where bounds[0] != nil: numbers.insert(bounds[0]!)
            case 2 where bounds[0] != nil && bounds[1] != nil && bounds[0]! <= bounds[1]!: numbers.formUnion(bounds[0]!...bounds[1]!)
            default: return nil
            }
        }
        return numbers.isEmpty ? nil : numbers.sorted()
    }

    /// `[0, 1, 2, 3, 7]` → `0-3,7`.
    public static func text(_ numbers: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        let sorted = numbers.sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}
