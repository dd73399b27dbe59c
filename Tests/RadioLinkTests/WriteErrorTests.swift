import Glibc
import NIOCore
import Testing

@testable import RadioLink

@Suite struct WriteErrorTests {
    @Test func writingIntoAConnectionThePeerClosedIsTheTransportClosing() {
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: ChannelError.ioOnClosedChannel) == .transportClosed)
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: ChannelError.alreadyClosed) == .transportClosed)
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: IOError(errnoCode: EPIPE, reason: "write")) == .transportClosed)
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: IOError(errnoCode: ECONNRESET, reason: "write")) == .transportClosed)
    }

    @Test func otherWriteErrorsAreWriteFailures() {
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: IOError(errnoCode: EIO, reason: "write")) == .writeFailed)
        #expect(RadioLink<ContinuousClock>.lossReason(forWriteError: ChannelError.writeMessageTooLarge) == .writeFailed)
    }
}
