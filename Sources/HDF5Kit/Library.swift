// Process-wide HDF5 set-up and the error-stack capture every failing C call goes through.
internal import CHDF5

/// Turns off HDF5's automatic error printing for the calling thread: failures are reported as
/// `HDF5Error`s carrying the error stack instead. The thread-safe HDF5 build keeps this setting per
/// thread, so every entry point that may fail calls it (it costs a few nanoseconds).
func silenceHDF5ErrorPrinting() {
    kv_silence_errors()
}

/// The calling thread's HDF5 error stack as one line (innermost call first), or nil when empty.
func currentErrorStack() -> String? {
    var buffer = [CChar](repeating: 0, count: 2048)
    buffer.withUnsafeMutableBufferPointer { kv_error_stack($0.baseAddress, $0.count) }
    let text = String(cChars: buffer)
    return text.isEmpty ? nil : text
}

/// Throws an `HDF5Error` with the current error stack when `status` is negative; returns `status` otherwise.
@discardableResult
func check<T: BinaryInteger>(
    _ status: T, _ code: HDF5Error.Code, _ message: @autoclosure () -> String,
    file: String?, object: String?
) throws -> T {
    if status < 0 {
        throw HDF5Error(code, message(), file: file, object: object, cause: currentErrorStack())
    }
    return status
}

extension String {
    /// Decodes a NUL-terminated C character buffer as UTF-8 (invalid bytes become U+FFFD).
    init(cChars buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
