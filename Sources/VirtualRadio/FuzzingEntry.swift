import MeshtasticProtocol
import NIOCore

/// The virtual radio's reading of a client's bytes, for the fuzz target in `Fuzz/` (an SPI,
/// not an API).
@_spi(Fuzzing) public enum VirtualRadioInputs {
    /// One item of a client's stream as the virtual radio takes it.
    public struct Reading: Equatable {
        /// `undecodable`, `want_config`, `packet`, `heartbeat`, `disconnect` or `not_served`.
        public var kind: String
        /// For an `ADMIN_APP` packet whose payload reads as an admin message: its request's name.
        public var adminRequest: String?
        /// For a packet: why a client without `allowAdmin` may not send it, or nil.
        public var refusal: String?
    }

    /// What each item of a client's stream, arriving in `pieces`, asks for.
    public static func read(_ pieces: [ArraySlice<UInt8>]) -> [Reading] {
        var decoder = MeshtasticFrameDecoder(checksPayloads: true)
        var buffer = ByteBuffer()
        var readings: [Reading] = []
        for piece in pieces {
            buffer.writeBytes(piece)
            while let item = decoder.next(from: &buffer) { readings.append(reading(of: ClientRequest(item))) }
            buffer.discardReadBytes()
        }
        return readings
    }

    static func reading(of request: ClientRequest) -> Reading {
        switch request {
        case .undecodable: return Reading(kind: "undecodable")
        case .wantConfig: return Reading(kind: "want_config")
        case .heartbeat: return Reading(kind: "heartbeat")
        case .disconnect: return Reading(kind: "disconnect")
        case .notServed: return Reading(kind: "not_served")
        case .packet(let packet):
            var admin: String?
            if case .decoded(let data)? = packet.payloadVariant, data.portnum == .adminApp,
                let variant = (try? Meshtastic_AdminMessage(serializedBytes: data.payload))?.payloadVariant
            {
                admin = AdminPolicy.name(of: variant)
            }
            return Reading(kind: "packet", adminRequest: admin, refusal: AdminPolicy.refusal(of: packet))
        }
    }
}
