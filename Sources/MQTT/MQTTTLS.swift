import NIOCore
import NIOSSL

/// TLS towards the MQTT broker: which CAs to trust (a file, or the system's), an optional
/// client certificate, and the name the broker's certificate must carry.
public struct MQTTTLS: Sendable, Equatable {
    /// PEM file of the CA certificates that sign the broker's; nil trusts the system's CAs.
    public var caFile: String?
    /// PEM client certificate (chain) and its key, for brokers that authenticate clients by certificate.
    public var certificateFile: String?
    public var keyFile: String?
    /// The name checked against the broker's certificate (and sent as SNI); nil uses the host.
    public var serverName: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    /// The TLS context, made once: a CA or key file that cannot be read is an error at start,
    /// not a failure on every reconnect.
    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caFile {
            configuration.trustRoots = .certificates(try load("CA file", caFile) { try NIOSSLCertificate.fromPEMFile($0) })
        }
        switch (certificateFile, keyFile) {
        case (let certificate?, let key?):
            configuration.certificateChain = try load("client certificate", certificate) { try NIOSSLCertificate.fromPEMFile($0) }.map { .certificate($0) }
            configuration.privateKey = .privateKey(try load("client key", key) { try NIOSSLPrivateKey(file: $0, format: .pem) })
        case (nil, nil):
            break
        default:
            throw MQTTTLSError("a client certificate needs both certificateFile and keyFile")
        }
        return try NIOSSLContext(configuration: configuration)
    }

    private func load<T>(_ what: String, _ path: String, _ body: (String) throws -> T) throws -> T {
        do {
            return try body(path)
        } catch {
            throw MQTTTLSError("cannot read the \(what) \(path): \(error)")
        }
    }

    /// The handler that starts TLS on a new connection to `host`.
    func handler(context: NIOSSLContext, host: String) throws -> NIOSSLClientHandler {
        let name = serverName ?? host
        // SNI carries names only; for an address the certificate is checked against the address.
        let isAddress = (try? SocketAddress(ipAddress: name, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : name)
    }

    /// A TLS failure in words: what a user checks next.
    static func describe(_ error: any Error) -> String? {
        guard let ssl = error as? NIOSSLError else {
            guard let extra = error as? NIOSSLExtraError else { return nil }
            if extra == .failedToValidateHostname { return "TLS: the broker's certificate does not carry the expected server name (\(extra))" }
            return "TLS: \(extra)"
        }
        switch ssl {
        case .handshakeFailed(let reason):
            let text = "\(reason)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") { return "TLS: the broker's certificate is not trusted (check the CA file and the server name): \(text)" }
            return "TLS handshake failed: \(text)"
        default:
            return "TLS: \(ssl)"
        }
    }
}

/// A TLS setting that cannot work (a file that cannot be read, half a client certificate).
public struct MQTTTLSError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}
