import CZeroMQ

/// An error from libzmq: the failed operation and the `zmq_errno` code with its text.
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The libzmq call or wrapper operation that failed, e.g. `bind(tcp://127.0.0.1:7710)`.
    public let operation: String
    /// The `zmq_errno()` value at the time of failure.
    public let code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// Captures `zmq_errno()` for a call that just failed.
    static func last(_ operation: String) -> ZMQError {
        ZMQError(operation: operation, code: zmq_errno())
    }

    /// libzmq's own text for `code`.
    public var message: String { String(cString: zmq_strerror(code)) }

    public var description: String { "\(operation): \(message) (errno \(code))" }

    /// True when the call failed only because it would have blocked (`EAGAIN`).
    public var wouldBlock: Bool { code == EAGAIN }

    /// True when the context was terminated while the call was in progress (`ETERM`).
    public var contextTerminated: Bool { code == ETERM }
}
