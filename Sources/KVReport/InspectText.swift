// The human-readable rendering of `kvstat inspect`.
import Foundation
import KVStat

/// Renders a dump summary as aligned `name: value` lines for a terminal.
public enum InspectText {
    public static func render(_ s: DumpSummary, scan: DumpScan? = nil) -> String {
        var lines: [(String, String)] = [
            ("file", s.path),
            ("layout", "\(s.layout): \(s.pattern)"),
            (
                "layers",
                "\(s.layers)" + (s.layerNumbers.map { numbers(of: $0, layers: s.layers) } ?? "")
            ),
            ("kv heads", "\(s.kvHeads)"),
            (
                "query heads",
                s.queryHeads.map { "\($0)\($0 > s.kvHeads ? " (GQA, \($0 / s.kvHeads) per kv head)" : "")" }
                    ?? "none stored"
            ),
            ("head dim", "\(s.headDim)"),
            ("sequences", "\(s.sequences)"),
            ("tokens", "\(s.tokens) valid of \(s.sequences * s.maxTokens) stored (padding: \(s.padding))"),
            ("tensors", s.kinds.joined(separator: ", ")),
            ("dtype", s.dtype),
            (
                "size",
                "\(ByteCount.format(s.bytesOnDisk)) on disk, \(ByteCount.format(s.bytesStored)) uncompressed, "
                    + "\(ByteCount.format(s.bytesFloat32)) as float32 (valid tokens)"
            ),
        ]
        let storage = Set(
            s.tensors.map { t in
                (t.chunks.map { "chunks \($0.map(String.init).joined(separator: "×"))" } ?? "contiguous")
                    + (t.filters.isEmpty ? "" : ", filters " + t.filters.joined(separator: "+"))
            }
        ).sorted()
        lines.append(("storage", storage.joined(separator: "; ")))
        for note in s.ignored ?? [] { lines.append(("not read", note)) }
        for key in s.attributes.keys.sorted() { lines.append(("attr \(key)", s.attributes[key]!)) }
        if let scan {
            lines.append(("values read", "\(scan.values)"))
            let bad = scan.nonFinite.keys.sorted().map {
                "\($0): \(scan.nonFinite[$0]!) (\(scan.excludedRows[$0] ?? 0) rows excluded)"
            }
            lines.append(("non-finite", bad.isEmpty ? "none" : bad.joined(separator: ", ")))
        }
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(
            separator: "\n")
    }
}

/// Byte counts in binary units.
public enum ByteCount {
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}

/// " (numbered 0,5,7)" when the dump's layer numbers are not 0..<layers, else "".
private func numbers(of layerNumbers: [Int], layers: Int) -> String {
    layerNumbers == Array(0..<layers) ? "" : " (numbered \(IndexList.text(layerNumbers)))"
}
