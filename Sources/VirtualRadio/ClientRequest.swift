import MeshtasticProtocol
import NIOCore

/// What one item of a virtual client's stream asks for, read before any state is touched.
enum ClientRequest {
    /// A frame that is not a `ToRadio`, or text between frames.
    case undecodable
    /// The client's handshake, with its nonce.
    case wantConfig(nonce: UInt32)
    /// A packet for the mesh (admin policy and outbox still to pass).
    case packet(Meshtastic_MeshPacket)
    case heartbeat
    case disconnect
    /// XModem and the MQTT client proxy belong to one client and one radio; they are not shared.
    case notServed(String)

    init(_ item: StreamItem) {
        guard case .frame(let frame) = item, let request = try? Meshtastic_ToRadio(serializedBytes: Array(frame.readableBytesView)) else {
            self = .undecodable
            return
        }
        switch request.payloadVariant {
        case .wantConfigID(let nonce): self = .wantConfig(nonce: nonce)
        case .packet(let packet): self = .packet(packet)
        case .heartbeat: self = .heartbeat
        case .disconnect: self = .disconnect
        case let other: self = .notServed(other.map { String("\($0)".prefix(40)) } ?? "empty")
        }
    }
}
