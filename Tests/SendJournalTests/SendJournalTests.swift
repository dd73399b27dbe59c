import Foundation
@testable import SendJournal
import Testing

/// A scratch directory removed when the test ends.
private struct ScratchDirectory: ~Copyable {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "meshbus-journal-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ slot: String) -> String { SendJournal.path(directory: path, slot: slot) }
}

private func send(_ packetID: UInt32, requestID: String? = "request", deadline: Int64 = 1_800_000_000_000) -> JournaledSend {
    JournaledSend(packetID: packetID, requestID: requestID, deadline: deadline, packet: [0x0D, UInt8(packetID & 0xFF), 0x01, 0x02])
}

@Suite struct JournalFormatTests {
    @Test func checksumIsZlibsCRC32() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
    }

    @Test func recordsReadBackAsWritten() {
        let records: [JournalRecord] = [
            .accepted(send(7, requestID: "äpfel-1")), .accepted(send(8, requestID: nil, deadline: -5)), .settled(packetID: 7),
            .accepted(JournaledSend(packetID: .max, requestID: "", deadline: .max, packet: [])),
        ]
        let file = JournalFormat.magic + records.flatMap(JournalFormat.encode)
        #expect(JournalFormat.decode(file) == .init(records: records, discardedBytes: 0, problem: nil))
    }

    @Test func aTornLastRecordIsDiscardedAndNamed() {
        let whole = JournalFormat.encode(.accepted(send(1)))
        let torn = JournalFormat.encode(.accepted(send(2)))
        for cut in 1..<torn.count {
            let contents = JournalFormat.decode(JournalFormat.magic + whole + torn.prefix(cut))
            #expect(contents.records == [.accepted(send(1))])
            #expect(contents.discardedBytes == cut)
            #expect(contents.problem?.contains("cut short") == true)
        }
    }

    @Test func aDamagedRecordStopsReadingAtItsChecksum() {
        var second = JournalFormat.encode(.settled(packetID: 3))
        second[second.count - 1] ^= 0x40
        let contents = JournalFormat.decode(JournalFormat.magic + JournalFormat.encode(.settled(packetID: 2)) + second)
        #expect(contents.records == [.settled(packetID: 2)])
        #expect(contents.problem == "a record with a wrong checksum at byte \(JournalFormat.magic.count + 13)")
    }

    @Test func aFileOfAnotherFormatIsNotRead() {
        let contents = JournalFormat.decode(Array("not a journal at all".utf8))
        #expect(contents.records.isEmpty)
        #expect(contents.discardedBytes == 20)
        #expect(contents.problem?.contains("not a MeshBus send journal") == true)
    }
}

@Suite struct SendJournalTests {
    @Test func aMissingJournalRecoversNothing() throws {
        let directory = try ScratchDirectory()
        #expect(try SendJournal.recover(directory: directory.path, slot: "a") == .init(sends: [], discardedBytes: 0, problem: nil))
    }

    @Test func openSendsSurviveInTheOrderAccepted() throws {
        let directory = try ScratchDirectory()
        let sends = [send(30), send(10), send(20)]
        do {
            let journal = try SendJournal(directory: directory.path, slot: "a", keeping: [])
            for item in sends { try journal.accepted(item) }
            try journal.settled(10)
            try journal.settled(99)
            #expect(journal.openSends == 2)
        }
        let recovered = try SendJournal.recover(directory: directory.path, slot: "a")
        #expect(recovered.sends == [sends[0], sends[2]])
        #expect(recovered.problem == nil)
    }

    @Test func openingRewritesTheFileWithOnlyTheSendsKept() throws {
        let directory = try ScratchDirectory()
        do {
            let journal = try SendJournal(directory: directory.path, slot: "a", keeping: [])
            for packetID in UInt32(1)...50 { try journal.accepted(send(packetID)) }
        }
        let kept = [send(4), send(5)]
        let journal = try SendJournal(directory: directory.path, slot: "a", keeping: kept)
        let expectedSize = JournalFormat.magic.count + kept.map { JournalFormat.encode(.accepted($0)).count }.reduce(0, +)
        #expect(journal.size == expectedSize)
        #expect(try FileManager.default.attributesOfItem(atPath: directory.file("a"))[.size] as? Int == expectedSize)
        #expect(!FileManager.default.fileExists(atPath: directory.file("a") + ".new"))
        #expect(try SendJournal.recover(directory: directory.path, slot: "a").sends == kept)
    }

    @Test func theFileStaysBoundedAsSendsComeAndGo() throws {
        let directory = try ScratchDirectory()
        let bound = 4096
        let journal = try SendJournal(directory: directory.path, slot: "a", keeping: [], compactAfter: bound)
        let record = JournalFormat.encode(.accepted(send(1))).count + JournalFormat.encode(.settled(packetID: 1)).count
        for packetID in UInt32(1)...2000 {
            try journal.accepted(send(packetID))
            if packetID > 3 { try journal.settled(packetID - 3) }
            #expect(journal.size < bound + record)
        }
        #expect(journal.compactions > 0)
        #expect(try SendJournal.recover(directory: directory.path, slot: "a").sends.map(\.packetID) == [1998, 1999, 2000])
    }

    @Test func aCompactionThatFailsStillSettlesTheSendInTheFileAsItIs() throws {
        let directory = try ScratchDirectory()
        let journal = try SendJournal(directory: directory.path, slot: "a", keeping: [], compactAfter: 1)
        try journal.accepted(send(1))
        try journal.accepted(send(2))
        // A directory where the rewrite would go: the rewrite cannot be created.
        try FileManager.default.createDirectory(atPath: directory.file("a") + ".new", withIntermediateDirectories: false)
        #expect(throws: SendJournal.Failure.self) { try journal.settled(1) }
        #expect(journal.compactions == 0)
        #expect(try SendJournal.recover(directory: directory.path, slot: "a").sends.map(\.packetID) == [2])
    }

    @Test func aTornTailIsReportedAndTheRestRecovered() throws {
        let directory = try ScratchDirectory()
        do {
            let journal = try SendJournal(directory: directory.path, slot: "a", keeping: [])
            try journal.accepted(send(1))
        }
        let handle = try #require(FileHandle(forWritingAtPath: directory.file("a")))
        handle.seekToEndOfFile()
        handle.write(Data(JournalFormat.encode(.accepted(send(2))).prefix(11)))
        try handle.close()
        let recovered = try SendJournal.recover(directory: directory.path, slot: "a")
        #expect(recovered.sends.map(\.packetID) == [1])
        #expect(recovered.discardedBytes == 11)
        #expect(recovered.problem != nil)
    }

    @Test func prepareMakesTheDirectoryAndRefusesAFile() throws {
        let directory = try ScratchDirectory()
        try SendJournal.prepare(directory: directory.path + "/state")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: directory.path + "/state", isDirectory: &isDirectory) && isDirectory.boolValue)
        FileManager.default.createFile(atPath: directory.path + "/plain", contents: Data())
        #expect(throws: SendJournal.Failure.self) { try SendJournal.prepare(directory: directory.path + "/plain") }
        #expect(throws: SendJournal.Failure.self) { try SendJournal.prepare(directory: directory.path + "/missing/state") }
    }
}
