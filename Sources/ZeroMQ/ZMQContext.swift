import CZeroMQ

/// A libzmq context: the I/O threads behind every socket created from it.
///
/// The context itself is thread-safe, so it may be shared; sockets made from it are not
/// (see ``ZMQSocket``). Call ``terminate()`` after every socket is closed.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        self.handle = handle
    }

    /// Ends the context. Blocks until every socket made from it is closed; sockets still
    /// blocked in a call get `ETERM`.
    public func terminate() {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// libzmq's version as (major, minor, patch).
    public static var version: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0
        var minor: Int32 = 0
        var patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }

    /// Whether this libzmq was built with CURVE security.
    public static var hasCurve: Bool { zmq_has("curve") == 1 }
}
