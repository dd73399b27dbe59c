import MeshtasticProtocol

/// Which packets from a virtual client may reach the radio when admin is not allowed: an
/// `ADMIN_APP` packet passes only if it asks for something (`get_*`); anything that would
/// change a radio (set config, owner, channels, reboot, factory reset, node DB edits…), and
/// any admin payload MeshBus cannot read, is refused. This holds whichever node the packet
/// is for, since remote admin changes a radio too.
enum AdminPolicy {
    /// What is refused (`admin request 'set_owner'`), or nil if the packet may go to the radio.
    static func refusal(of packet: Meshtastic_MeshPacket) -> String? {
        guard case .decoded(let data)? = packet.payloadVariant, data.portnum == .adminApp else { return nil }
        guard let admin = try? Meshtastic_AdminMessage(serializedBytes: data.payload) else {
            return "an admin payload it cannot read"
        }
        guard let variant = admin.payloadVariant else { return "an admin message with no request it knows" }
        switch variant {
        case .getChannelRequest, .getOwnerRequest, .getConfigRequest, .getModuleConfigRequest, .getCannedMessageModuleMessagesRequest,
            .getDeviceMetadataRequest, .getRingtoneRequest, .getDeviceConnectionStatusRequest, .getNodeRemoteHardwarePinsRequest,
            .getUiConfigRequest:
            return nil
        default:
            return "admin request '\(name(of: variant))'"
        }
    }

    /// The request's name as in the protobuf (`set_config`, `reboot_seconds`).
    static func name(of variant: Meshtastic_AdminMessage.OneOf_PayloadVariant) -> String {
        let label = String(describing: variant).prefix { $0 != "(" }
        var snake = ""
        for character in label {
            if character.isUppercase {
                snake += "_" + character.lowercased()
            } else {
                snake.append(character)
            }
        }
        return snake
    }
}
