// Checks and parsers for option values: every number has explicit bounds (NaN and ±inf refused), lists of layers
// and sequences stay ranges until a dump says which numbers exist. A bad value is a usage error (exit 64) whose
// message gives the allowed range.
import ArgumentParser
import KVStat

/// Bounds checks for numeric options, thrown as `ValidationError` (usage, exit 64).
enum OptionBounds {
    /// `value` must lie in `range`.
    static func check(_ value: Int, _ option: String, in range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            let allowed =
                range.upperBound == Int.max
                ? "at least \(range.lowerBound)" : "in \(range.lowerBound)…\(range.upperBound)"
            throw ValidationError("\(option) must be \(allowed) (got \(value))")
        }
    }

    /// `value` must be finite and lie in the interval from `lower` to `upper`, each end open or closed as told.
    static func check(
        _ value: Double, _ option: String, above lower: Double, orEqual lowerClosed: Bool = false,
        upTo upper: Double? = nil, orEqualUpper upperClosed: Bool = true
    ) throws {
        let inside =
            value.isFinite && (lowerClosed ? value >= lower : value > lower)
            && (upper.map { upperClosed ? value <= $0 : value < $0 } ?? true)
        guard inside else {
            let low = (lowerClosed ? "[" : "(") + number(lower)
            let high = upper.map { number($0) + (upperClosed ? "]" : ")") } ?? "∞)"
            throw ValidationError("\(option) must be a finite number in \(low), \(high) (got \(value))")
        }
    }

    static func number(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
}

/// Parses `--layers` / `--sequences` values (`0-7,12`) into sorted disjoint ranges, never expanded: the dump's
/// numbers are matched against them after it is opened (`resolve`).
enum LayerList {
    /// The ranges of `text`; a usage error (exit 64) when it is not a list of numbers and ranges a-b.
    static func parse(_ text: String, option: String = "--layers") throws -> [ClosedRange<Int>] {
        do throws(IndexList.ParseError) {
            return try IndexList.ranges(text)
        } catch {
            throw ValidationError("\(option): cannot read '\(text)': \(error); use e.g. 0-7,12")
        }
    }

    /// The numbers of `available` that `text` names; exit 65 (the dump lacks some) saying which it has.
    static func resolve<Available: RandomAccessCollection>(
        _ text: String, option: String, noun: String, in available: Available,
        file: String
    ) throws -> [Int]
    where Available.Element == Int, Available.Index == Int {
        try IndexList.resolve(try parse(text, option: option), in: available, option: option, noun: noun, file: file)
    }
}

/// Parses `--tokens START:END` (END exclusive; either may be omitted).
enum TokenRangeOption {
    static func parse(_ text: String) throws -> Range<Int> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw ValidationError(
                "--tokens: cannot read '\(text)'; use START:END with START < END, e.g. 0:4096 or 4096:")
        }
        func bound(_ part: Substring, empty: Int) throws -> Int {
            guard !part.isEmpty else { return empty }
            guard part.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw ValidationError("--tokens: '\(part)' in '\(text)' is not a token position (a number ≥ 0)")
            }
            guard let value = Int(part) else {
                throw ValidationError("--tokens: '\(part)' in '\(text)' is too large (positions go up to \(Int.max))")
            }
            return value
        }
        let lower = try bound(parts[0], empty: 0)
        let upper = try bound(parts[1], empty: Int.max)
        guard lower < upper else {
            throw ValidationError("--tokens: START must be below END in '\(text)', e.g. 0:4096 or 4096:")
        }
        return lower..<upper
    }
}
