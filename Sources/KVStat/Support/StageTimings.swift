// Wall time (and floating-point work, where it is known) per stage of an analysis, for `--timings` and the
// benchmarks: how long reading, the Gram products, the eigendecompositions and the DCT each took.
import Foundation

/// Accumulated wall seconds and flops per named stage. Not thread-safe: one analysis, one thread.
public final class StageTimings: @unchecked Sendable {
    public struct Stage: Sendable {
        public var seconds = 0.0
        /// Floating-point operations done in the stage (0 where not counted).
        public var flops = 0.0
    }

    public private(set) var stages: [String: Stage] = [:]
    /// Stage names in the order they were first seen.
    public private(set) var order: [String] = []

    public init() {}

    /// Runs `body`, adding its wall time (and `flops`) to `stage`.
    @discardableResult
    public func measure<T>(_ stage: String, flops: Double = 0, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { add(stage, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, flops: flops) }
        return try body()
    }

    /// Adds `seconds` and `flops` to `stage`.
    public func add(_ stage: String, seconds: Double, flops: Double = 0) {
        if stages[stage] == nil { order.append(stage) }
        stages[stage, default: Stage()].seconds += seconds
        stages[stage, default: Stage()].flops += flops
    }

    /// One line per stage: `name  seconds  [GFLOP/s]`.
    public var lines: [String] {
        order.map { name in
            let s = stages[name]!
            let rate = s.flops > 0 && s.seconds > 0 ? String(format: "  %.1f GFLOP/s", s.flops / s.seconds / 1e9) : ""
            return name.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%8.3f s", s.seconds) + rate
        }
    }
}
