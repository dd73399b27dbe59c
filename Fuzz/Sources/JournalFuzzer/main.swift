import FuzzSupport
@_spi(Fuzzing) import SendJournal

/// A send journal left by a crash, read back at start. Checks: nothing traps, as a whole file
/// or as record bodies framed with a valid checksum (so the body parser is reached); every
/// record read, encoded again, gives back its bytes exactly; and a file cut anywhere reads as
/// the records wholly before the cut.
func fuzzJournal(_ bytes: [UInt8]) {
    _ = JournalFormat.decode(bytes)
    var file = JournalFormat.magic
    var frames: [[UInt8]] = []
    for body in pieces(of: bytes, maximum: 64) {
        let frame = JournalFormat.frame(body: Array(body))
        frames.append(frame)
        file.append(contentsOf: frame)
    }
    let contents = JournalFormat.decode(file)
    for (record, frame) in zip(contents.records, frames) where JournalFormat.encode(record) != frame {
        fatalError("record \(record) encodes to other bytes than it was read from: \(frame)")
    }
    let readBytes = JournalFormat.magic.count + frames.prefix(contents.records.count).reduce(0) { $0 + $1.count }
    guard readBytes + contents.discardedBytes == file.count else {
        fatalError("read \(readBytes) and discarded \(contents.discardedBytes) of \(file.count) bytes")
    }
    guard let first = frames.first, contents.records.count > 0 else { return }
    let cut = JournalFormat.decode(Array(file.prefix(JournalFormat.magic.count + first.count - 1)))
    guard cut.records.isEmpty, cut.discardedBytes == first.count - 1, cut.problem != nil else {
        fatalError("a record cut short was not discarded: \(cut)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzJournal(fuzzInput(data, count))
    return 0
}

runFuzzer(testOneInput)
