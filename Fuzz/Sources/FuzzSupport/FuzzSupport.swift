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
