// Bracketing libhdf5's metadata calls (opening a file, listing a group, reading an attribute) for the watchdog in
// CProcessControl: a corrupt heap can make libhdf5 1.10 loop forever there, and a hang is never an answer.
internal import CProcessControl

/// The metadata watchdog's brackets. Installed by the CLI (`MetadataWatchdog.install`); a library user that does
/// not install it pays one atomic store per call.
public enum MetadataWatchdog {
    /// Starts the watchdog: a metadata call running longer than `seconds` ends the process with exit 65.
    public static func install(seconds: Double) { _ = kv_install_metadata_watchdog(seconds) }

    /// Runs `body`, a libhdf5 metadata call, inside the watchdog's bracket.
    static func bracket<T>(_ body: () throws -> T) rethrows -> T {
        kv_metadata_call_begin()
        defer { kv_metadata_call_end() }
        return try body()
    }
}
