import ZeroMQ

/// Who may reach the broker's sockets.
///
/// Loopback endpoints are open to local processes (the machine is the trust boundary).
/// An endpoint reachable from elsewhere needs CURVE: the broker's key pair and the public
/// keys of the clients it admits, each with a role. `insecure` waives that on purpose.
public struct SecurityConfiguration: Sendable, Equatable {
    /// Binding a non-loopback address without CURVE is allowed only with this set.
    public var insecure: Bool
    /// When set, every endpoint (loopback too) speaks CURVE and admits only the listed keys.
    public var curve: CurveConfiguration?
    /// When set, every HTTP request (loopback too) needs one of these bearer tokens.
    public var tokens: AccessTokens?

    public init(insecure: Bool = false, curve: CurveConfiguration? = nil, tokens: AccessTokens? = nil) {
        self.insecure = insecure
        self.curve = curve
        self.tokens = tokens
    }
}

/// The HTTP listener's bearer tokens (design.md §8), each granting a role: what CURVE keys
/// are to the ZeroMQ endpoints.
public struct AccessTokens: Sendable, Equatable {
    public var read: [String]
    public var send: [String]

    /// Shorter tokens are refused in the configuration: they could be guessed.
    public static let minimumLength = 16

    public init(read: [String], send: [String]) {
        self.read = read
        self.send = send
    }

    /// The role `presented` grants (`send` wins when listed in both), nil for an unknown token.
    /// Every configured token is compared in full, so timing does not tell how much matched.
    public func role(of presented: Substring) -> ClientRole? {
        func matches(_ token: String) -> Bool {
            var difference: UInt8 = token.utf8.count == presented.utf8.count ? 0 : 1
            for (a, b) in zip(token.utf8, presented.utf8) { difference |= a ^ b }
            return difference == 0
        }
        var (isSend, isRead) = (false, false)
        for token in send where matches(token) { isSend = true }
        for token in read where matches(token) { isRead = true }
        return isSend ? .send : isRead ? .read : nil
    }
}

/// The broker's CURVE key pair and the client keys it admits.
public struct CurveConfiguration: Sendable, Equatable {
    /// The broker's secret key, Z85 (40 characters).
    public var secretKey: String
    public var clients: [CurveClient]

    public init(secretKey: String, clients: [CurveClient]) {
        self.secretKey = secretKey
        self.clients = clients
    }
}

/// A client admitted by its CURVE public key.
public struct CurveClient: Sendable, Equatable {
    /// The client's public key, Z85 (40 characters).
    public var publicKey: String
    public var role: ClientRole

    public init(publicKey: String, role: ClientRole) {
        self.publicKey = publicKey
        self.role = role
    }
}

/// What an admitted client may do.
public enum ClientRole: String, Sendable, Equatable, CaseIterable {
    /// Subscribe to events and run read-only commands (ping, status, nodes, snapshot, replay).
    case read
    /// Everything `read` may, plus commands that reach the radio (sends, reconnect, disconnectForRestart).
    case send
}

extension SecurityConfiguration {
    /// Whether a ZeroMQ endpoint can only be reached from this machine.
    public static func isLoopback(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = endpoint.dropFirst("tcp://".count)
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        if host == "localhost" || host == "::1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The ZAP domain the broker's sockets authenticate in.
    static let zapDomain = "meshbus"

    /// Puts `socket` in the broker's ZAP domain (every new peer is asked about, see
    /// ``Broker``'s admission), and makes it a CURVE server when CURVE is configured.
    func apply(to socket: ZMQSocket) throws {
        try socket.setZAPDomain(Self.zapDomain)
        guard let curve else { return }
        try socket.setCurveServer(secretKey: Array(curve.secretKey.utf8))
    }

    /// The ZAP verdict on a new peer that the descriptor budget lets in: under CURVE, its key
    /// must be listed (its role becomes the user id); without CURVE, every peer is admitted.
    func verdict(on request: ZMQAuthenticator.Request) -> ZMQAuthenticator.Verdict {
        guard request.domain == Self.zapDomain else { return .refuse("unknown ZAP domain") }
        guard curve != nil else { return .admit(userID: "") }
        guard let key = request.publicKey, let role = role(ofKey: key) else { return .refuse("client key not admitted") }
        return .admit(userID: role.rawValue)
    }

    /// The role of an admitted key, as the ZAP handler reports it in `User-Id`.
    func role(ofKey publicKey: String) -> ClientRole? {
        curve?.clients.first { $0.publicKey == publicKey }?.role
    }

    /// Refuses endpoints that would be reachable from other machines without CURVE.
    func check(endpoints: [String]) throws(BrokerStartError) {
        if let curve {
            guard Z85.isCurveKey(curve.secretKey) else { throw .badKey("security.curve.secretKey") }
            for (index, client) in curve.clients.enumerated() where !Z85.isCurveKey(client.publicKey) {
                throw .badKey("security.curve.clients[\(index)].key")
            }
        }
        guard curve == nil, !insecure else { return }
        if let open = endpoints.first(where: { !Self.isLoopback($0) }) {
            throw .insecureEndpoint(open)
        }
    }
}

/// Why the broker could not start.
public enum BrokerStartError: Error, CustomStringConvertible, Equatable {
    /// A non-loopback endpoint without CURVE or `insecure`.
    case insecureEndpoint(String)
    /// A CURVE key that is not 40 characters of Z85.
    case badKey(String)

    public var description: String {
        switch self {
        case .insecureEndpoint(let endpoint):
            "\(endpoint) is reachable from other machines: configure security.curve (meshbus keygen makes a key pair) "
                + "or set security.insecure: true to accept unauthenticated clients"
        case .badKey(let what):
            "\(what) is not a CURVE key (40 characters of Z85, as meshbus keygen prints)"
        }
    }
}
