/// A slot's virtual radio port: where existing Meshtastic clients connect to share the
/// slot's radio, and what they may do there.
public struct VirtualRadioConfiguration: Sendable, Equatable {
    /// The default port of a radio's TCP API is 4403; MeshBus suggests 4404 and up for its ports.
    public static let suggestedPort = 4404

    public var host: String
    /// 0 picks a free port.
    public var port: Int
    /// Whether clients may send admin requests that change a radio (set config, reboot,
    /// factory reset…). Read-only admin requests (`get_*`) always pass.
    public var allowAdmin: Bool
    /// Messages a client may have waiting to be written to it; past that, live messages
    /// for it are dropped and counted (its handshake is never dropped).
    public var clientBuffer: Int
    /// Clients connected at once; one more is closed at once.
    public var maxClients: Int
    /// How long a client's packet may wait in the slot's outbox; past that it fails and its
    /// client gets a Routing NAK `TIMEOUT`.
    public var sendTimeout: Duration

    public init(
        host: String = "127.0.0.1", port: Int = suggestedPort, allowAdmin: Bool = false, clientBuffer: Int = 1024, maxClients: Int = 16,
        sendTimeout: Duration = .seconds(60)
    ) {
        self.host = host
        self.port = port
        self.allowAdmin = allowAdmin
        self.clientBuffer = clientBuffer
        self.maxClients = maxClients
        self.sendTimeout = sendTimeout
    }

    /// `host:port`, as in the configuration file.
    public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
