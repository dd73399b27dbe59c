#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's driver: parses the fuzzer's command line and calls the callback per input.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Starts libFuzzer from the executable's own `main` (SwiftPM renames and defines `main`
/// for executables, so libFuzzer's may not be the one that runs). `callback` is the same
/// function the target exports as `LLVMFuzzerTestOneInput`, which covers the other case.
public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}

/// The input as an array.
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> [UInt8] {
    data.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
}

/// The input cut into pieces of 1 to `maximum` bytes, the sizes taken from the input itself:
/// how a target checks that a stream decoder gives the same for bytes arriving in parts.
public func pieces(of bytes: [UInt8], maximum: Int) -> [ArraySlice<UInt8>] {
    var pieces: [ArraySlice<UInt8>] = []
    var index = 0
    var step = 0
    while index < bytes.count {
        let size = 1 + Int(bytes[step % bytes.count]) % maximum
        pieces.append(bytes[index..<min(bytes.count, index + size)])
        index += size
        step += 1
    }
    return pieces
}
