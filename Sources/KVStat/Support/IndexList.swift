// Lists of layer or sequence numbers as people type them (`0-7,12`): parsed into sorted disjoint ranges without
// ever expanding them (`0-1000000000` costs one range, not a billion numbers), matched against what a dump has,
// and printed back compactly.

/// Sorted, unique non-negative integers written as comma-separated numbers and inclusive ranges.
public enum IndexList {
    /// Why a list could not be read; `description` is the reason, for a usage message.
    public enum ParseError: Error, Equatable, CustomStringConvertible {
        /// A part that is not a number or a range `a-b` of numbers.
        case malformed(String)
        /// A number beyond Int.max.
        case tooLarge(String)
        /// A range `a-b` with a > b.
        case reversed(String)
        /// No parts at all.
        case empty

        public var description: String {
            switch self {
            case .malformed(let part): return "'\(part)' is not a number or a range a-b"
            case .tooLarge(let part): return "'\(part)' is too large (numbers go up to \(Int.max))"
            case .reversed(let part): return "the range '\(part)' ends before it starts"
            case .empty: return "the list is empty"
            }
        }
    }

    /// Parses `0-7,12` into ranges sorted by start, disjoint and not touching (overlapping or adjacent parts are
    /// merged: `3-5,0-3,6` → `[0...6]`). Work and memory grow with the number of parts, never with the numbers.
    public static func ranges(_ text: String) throws(ParseError) -> [ClosedRange<Int>] {
        var parts: [ClosedRange<Int>] = []
        for rawPart in text.split(separator: ",", omittingEmptySubsequences: false) {
            let part = trimmed(rawPart)
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2 else { throw .malformed(part) }
            var values: [Int] = []
            for bound in bounds {
                let digits = trimmed(bound)
                guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw .malformed(part) }
                guard let value = Int(digits) else { throw .tooLarge(part) }
                values.append(value)
            }
            guard values[0] <= values[values.count - 1] else { throw .reversed(part) }
            parts.append(values[0]...values[values.count - 1])
        }
        guard !parts.isEmpty else { throw .empty }
        return merged(parts)
    }

    static func trimmed(_ text: Substring) -> String {
        String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }

    /// `parts` sorted and merged into disjoint, non-touching ranges.
    public static func merged(_ parts: [ClosedRange<Int>]) -> [ClosedRange<Int>] {
        var result: [ClosedRange<Int>] = []
        for part in parts.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            // `upperBound == Int.max` touches everything after it; `+ 1` below never overflows otherwise.
            if let last = result.last, last.upperBound == Int.max || part.lowerBound <= last.upperBound + 1 {
                result[result.count - 1] = last.lowerBound...max(last.upperBound, part.upperBound)
            } else {
                result.append(part)
            }
        }
        return result
    }

    /// The numbers of `available` (ascending, unique) that lie in `ranges` (as from `ranges(_:)`), ascending,
    /// and the parts of `ranges` that hold none of `available`. O((|ranges| + |selected|) · log |available|).
    public static func select<Available: RandomAccessCollection>(
        _ ranges: [ClosedRange<Int>], from available: Available
    )
        -> (selected: [Int], missing: [ClosedRange<Int>]) where Available.Element == Int, Available.Index == Int
    {
        var selected: [Int] = []
        var missing: [ClosedRange<Int>] = []
        for range in ranges {
            var index = firstIndex(in: available, notBelow: range.lowerBound)
            var next = range.lowerBound  // first number of `range` not yet accounted for
            var done = false
            while !done && index < available.endIndex && available[index] <= range.upperBound {
                let number = available[index]
                if number > next { missing.append(next...(number - 1)) }
                selected.append(number)
                if number == range.upperBound { done = true } else { next = number + 1 }
                index += 1
            }
            if !done && next <= range.upperBound { missing.append(next...range.upperBound) }
        }
        return (selected, missing)
    }

    /// The numbers of `available` named by `ranges`; a `DumpError(.badData)` (exit 65) naming the numbers the
    /// dump lacks and those it has, when `ranges` names any number not in `available`.
    /// `option` and `noun` word the message: `--layers`, `layers`.
    public static func resolve<Available: RandomAccessCollection>(
        _ ranges: [ClosedRange<Int>], in available: Available, option: String, noun: String, file: String
    ) throws(DumpError) -> [Int] where Available.Element == Int, Available.Index == Int {
        let (selected, missing) = select(ranges, from: available)
        guard missing.isEmpty else {
            let has = available.isEmpty ? "none" : text(compacting: available)
            throw DumpError(
                .badData, "\(option) names \(noun) \(text(missing)) that the dump does not have; it has \(noun) \(has)",
                file: file)
        }
        return selected
    }

    /// Index of the first element of `sorted` that is ≥ `value` (endIndex when none is).
    static func firstIndex<Sorted: RandomAccessCollection>(in sorted: Sorted, notBelow value: Int) -> Int
    where Sorted.Element == Int, Sorted.Index == Int {
        var low = sorted.startIndex
        var high = sorted.endIndex
        while low < high {
            let mid = low + (high - low) / 2
            if sorted[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// `[0, 1, 2, 3, 7]` → `0-3,7`; at most `limit` parts, then `,… (N more)`.
    public static func text(_ numbers: [Int], limit: Int = 24) -> String {
        text(compacting: numbers.sorted(), limit: limit)
    }

    /// Ascending numbers, compacted into ranges, at most `limit` parts.
    static func text<Sorted: RandomAccessCollection>(compacting sorted: Sorted, limit: Int = 24) -> String
    where Sorted.Element == Int, Sorted.Index == Int {
        guard let first = sorted.first, let last = sorted.last else { return "" }
        // Contiguous (a whole dump's sequences, say): one range, without walking it.
        let span = last.subtractingReportingOverflow(first)
        if !span.overflow && span.partialValue == sorted.count - 1 { return text([first...last], limit: limit) }
        var parts: [ClosedRange<Int>] = []
        var index = sorted.startIndex
        while index < sorted.endIndex {
            var end = index
            while end + 1 < sorted.endIndex && sorted[end] != Int.max && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(sorted[index]...sorted[end])
            index = end + 1
        }
        return text(parts, limit: limit)
    }

    /// `[0...3, 7...7]` → `0-3,7`; at most `limit` parts, then `,… (N more)`.
    public static func text(_ ranges: [ClosedRange<Int>], limit: Int = 24) -> String {
        let shown = ranges.prefix(max(limit, 1)).map {
            $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)"
        }
        let more = ranges.count - shown.count
        return shown.joined(separator: ",") + (more > 0 ? ",… (\(more) more)" : "")
    }
}
