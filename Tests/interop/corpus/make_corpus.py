"""Writes fromradio.txt: FromRadio messages (name, hex) built with the official Python
`meshtastic` protobuf classes, covering every port MeshBus decodes, edge values, unknown
fields and enum numbers, encrypted packets and maximum sizes. Run it again after changing
the list; the output is committed so tests do not depend on this script's environment."""
import os

from meshtastic.protobuf import (
    admin_pb2, atak_pb2, channel_pb2, device_ui_pb2, mqtt_pb2, remote_hardware_pb2, paxcount_pb2, storeforward_pb2, xmodem_pb2, config_pb2, mesh_pb2, module_config_pb2, portnums_pb2, telemetry_pb2,
)

SENDER = 0x1A2B3C4D
LOCAL = 0x0BADC0DE
entries = []


def add(name, message):
    entries.append((name, message.SerializeToString()))


def packet(port, payload, **fields):
    p = mesh_pb2.MeshPacket()
    setattr(p, "from", fields.pop("sender", SENDER))
    p.to = fields.pop("to", 0xFFFFFFFF)
    p.id = fields.pop("id", 0x01020304)
    p.rx_time = fields.pop("rx_time", 1763900000)
    for key, value in fields.items():
        setattr(p, key, value)
    p.decoded.portnum = port
    p.decoded.payload = payload
    return mesh_pb2.FromRadio(packet=p)


def sub(message):
    return message.SerializeToString()


T = portnums_pb2
# Texts.
add("text_ascii", packet(T.TEXT_MESSAGE_APP, b"hello mesh", rx_snr=6.25, rx_rssi=-87, hop_limit=3, hop_start=3))
add("text_unicode_emoji", packet(T.TEXT_MESSAGE_APP, "grüße 🌍 ✓".encode()))
add("text_control_chars", packet(T.TEXT_MESSAGE_APP, b'quote " backslash \\ tab \t newline \n bell \x07'))
add("text_invalid_utf8", packet(T.TEXT_MESSAGE_APP, b"\xff\xfe broken"))
add("text_empty", packet(T.TEXT_MESSAGE_APP, b""))
add("text_max_payload", packet(T.TEXT_MESSAGE_APP, b"x" * 233))
add("text_direct_want_ack", packet(T.TEXT_MESSAGE_APP, b"dm", to=LOCAL, want_ack=True, channel=2, priority=mesh_pb2.MeshPacket.RELIABLE))
reply = packet(T.TEXT_MESSAGE_APP, "👍".encode())
reply.packet.decoded.reply_id = 0xDEADBEEF
reply.packet.decoded.emoji = 1
add("text_reply_emoji", reply)
add("text_via_mqtt_negative_snr", packet(T.TEXT_MESSAGE_APP, b"far", via_mqtt=True, rx_snr=-12.75, hop_start=7, hop_limit=0))
add("text_zero_from_to", packet(T.TEXT_MESSAGE_APP, b"zeros", sender=0, to=0))
add("text_high_node_numbers", packet(T.TEXT_MESSAGE_APP, b"high", sender=0xFFFFFFFE, to=0x80000000, id=0xFFFFFFFF))
add("detection_sensor_text", packet(T.DETECTION_SENSOR_APP, b"motion"))
add("range_test_text", packet(T.RANGE_TEST_APP, b"seq 42"))
# Positions.
add("position_full", packet(T.POSITION_APP, sub(mesh_pb2.Position(
    latitude_i=475123456, longitude_i=85012345, altitude=512, time=1763900000, location_source=mesh_pb2.Position.LOC_INTERNAL,
    altitude_source=mesh_pb2.Position.ALT_BAROMETRIC, timestamp=1763899990, precision_bits=32, sats_in_view=9, PDOP=120,
    ground_speed=3, ground_track=27000, fix_quality=1, fix_type=3, seq_number=7))))
add("position_southwest_negative", packet(T.POSITION_APP, sub(mesh_pb2.Position(latitude_i=-338567890, longitude_i=-1512109876, altitude=-20))))
add("position_zero_lat_lon_present", packet(T.POSITION_APP, sub(mesh_pb2.Position(latitude_i=0, longitude_i=0))))
add("position_extremes", packet(T.POSITION_APP, sub(mesh_pb2.Position(latitude_i=900000000, longitude_i=-1800000000, altitude_hae=-2147483648))))
# Node info.
add("nodeinfo_user", packet(T.NODEINFO_APP, sub(mesh_pb2.User(
    id="!1a2b3c4d", long_name="Roof Node", short_name="ROOF", hw_model=mesh_pb2.HardwareModel.HELTEC_V3,
    role=config_pb2.Config.DeviceConfig.ROUTER, public_key=bytes(range(32)), is_licensed=True))))
add("nodeinfo_unknown_hw_model_number", packet(T.NODEINFO_APP, bytes.fromhex("0a09213161326233633464") + bytes([0x28, 0xF3, 0x07])))
add("nodeinfo_unmessagable", packet(T.NODEINFO_APP, sub(mesh_pb2.User(id="!00000001", long_name="", short_name="x", is_unmessagable=True))))
# Telemetry.
add("telemetry_device", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(time=1763900000, device_metrics=telemetry_pb2.DeviceMetrics(
    battery_level=101, voltage=4.2, channel_utilization=12.5, air_util_tx=0.75, uptime_seconds=4294967295)))))
add("telemetry_environment", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(environment_metrics=telemetry_pb2.EnvironmentMetrics(
    temperature=-4.5, relative_humidity=88.0, barometric_pressure=1013.25, gas_resistance=12.5, iaq=50)))))
add("telemetry_power", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(power_metrics=telemetry_pb2.PowerMetrics(
    ch1_voltage=12.5, ch1_current=-250.0, ch2_voltage=5.0)))))
add("telemetry_local_stats", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(local_stats=telemetry_pb2.LocalStats(
    uptime_seconds=3600, channel_utilization=5.5, num_packets_tx=100, num_packets_rx=2000, num_online_nodes=12, num_total_nodes=40)))))
add("telemetry_air_quality", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(air_quality_metrics=telemetry_pb2.AirQualityMetrics(
    pm25_standard=12, pm10_standard=0, co2=415, co2_temperature=21.5)))))
add("telemetry_health", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(health_metrics=telemetry_pb2.HealthMetrics(heart_bpm=72, spO2=98)))))
add("telemetry_host_64bit", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(host_metrics=telemetry_pb2.HostMetrics(
    uptime_seconds=86400, freemem_bytes=18446744073709551615, diskfree1_bytes=9007199254740993, load1=150, user_string="pi")))))
add("telemetry_traffic_management", packet(T.TELEMETRY_APP, sub(telemetry_pb2.Telemetry(traffic_management_stats=telemetry_pb2.TrafficManagementStats(
    packets_inspected=1000, rate_limit_drops=3)))))
# Routing.
ack = packet(T.ROUTING_APP, sub(mesh_pb2.Routing(error_reason=mesh_pb2.Routing.NONE)), to=LOCAL)
ack.packet.decoded.request_id = 0x0BADF00D
add("routing_ack", ack)
add("routing_nak_max_retransmit", packet(T.ROUTING_APP, sub(mesh_pb2.Routing(error_reason=mesh_pb2.Routing.MAX_RETRANSMIT))))
add("routing_nak_rate_limit", packet(T.ROUTING_APP, sub(mesh_pb2.Routing(error_reason=mesh_pb2.Routing.RATE_LIMIT_EXCEEDED))))
add("routing_unknown_error_number", packet(T.ROUTING_APP, bytes([0x18, 0x63])))
add("routing_route_reply", packet(T.ROUTING_APP, sub(mesh_pb2.Routing(route_reply=mesh_pb2.RouteDiscovery(route=[1, 2, 3], snr_towards=[10, -20])))))
# Admin, traceroute, neighbor info, waypoint.
add("admin_metadata_response", packet(T.ADMIN_APP, sub(admin_pb2.AdminMessage(get_device_metadata_response=mesh_pb2.DeviceMetadata(
    firmware_version="2.7.11.abcdef", device_state_version=24, canShutdown=True, hasWifi=True, hw_model=mesh_pb2.HardwareModel.RAK4631, role=config_pb2.Config.DeviceConfig.CLIENT)))))
A = admin_pb2.AdminMessage
add("admin_get_config_response", packet(T.ADMIN_APP, sub(A(get_config_response=config_pb2.Config(lora=config_pb2.Config.LoRaConfig(region=config_pb2.Config.LoRaConfig.US, hop_limit=5))))))
add("admin_get_module_config_request", packet(T.ADMIN_APP, sub(A(get_module_config_request=A.TELEMETRY_CONFIG, session_passkey=b"\x01\x02"))))
add("admin_set_fixed_position", packet(T.ADMIN_APP, sub(A(set_fixed_position=mesh_pb2.Position(latitude_i=475000000, longitude_i=85000000)))))
add("admin_reboot", packet(T.ADMIN_APP, sub(A(reboot_seconds=5))))
add("traceroute", packet(T.TRACEROUTE_APP, sub(mesh_pb2.RouteDiscovery(route=[0x11111111, 0x22222222], snr_towards=[24, -8, 3], route_back=[0x33333333], snr_back=[-128, 127]))))
add("neighborinfo", packet(T.NEIGHBORINFO_APP, sub(mesh_pb2.NeighborInfo(node_id=SENDER, last_sent_by_id=LOCAL, node_broadcast_interval_secs=900,
    neighbors=[mesh_pb2.Neighbor(node_id=1, snr=7.5), mesh_pb2.Neighbor(node_id=2, snr=-3.25)]))))
add("waypoint", packet(T.WAYPOINT_APP, sub(mesh_pb2.Waypoint(id=99, latitude_i=475000000, longitude_i=85000000, expire=1763999999,
    locked_to=SENDER, name="Hut", description="Water here", icon=0x1F3E0))))
SF = storeforward_pb2.StoreAndForward
add("store_forward_stats", packet(T.STORE_FORWARD_APP, sub(SF(rr=SF.ROUTER_STATS, stats=SF.Statistics(messages_total=500, messages_saved=120, heartbeat=True, return_window=240)))))
add("store_forward_text", packet(T.STORE_FORWARD_APP, sub(SF(rr=SF.ROUTER_TEXT_BROADCAST, text=b"stored hello"))))
add("store_forward_heartbeat", packet(T.STORE_FORWARD_APP, sub(SF(rr=SF.ROUTER_HEARTBEAT, heartbeat=SF.Heartbeat(period=900)))))
add("paxcounter", packet(T.PAXCOUNTER_APP, sub(paxcount_pb2.Paxcount(wifi=12, ble=30, uptime=7200))))
add("remote_hardware_gpio_64bit", packet(T.REMOTE_HARDWARE_APP, sub(remote_hardware_pb2.HardwareMessage(
    type=remote_hardware_pb2.HardwareMessage.READ_GPIOS_REPLY, gpio_mask=0xFFFFFFFFFFFF, gpio_value=0x8000000000000001))))
add("map_report", packet(T.MAP_REPORT_APP, sub(mqtt_pb2.MapReport(long_name="Roof", short_name="RF", role=config_pb2.Config.DeviceConfig.ROUTER,
    hw_model=mesh_pb2.HardwareModel.RAK4631, firmware_version="2.7.11", region=config_pb2.Config.LoRaConfig.EU_868,
    modem_preset=config_pb2.Config.LoRaConfig.MEDIUM_FAST, has_default_channel=True, latitude_i=475000000, longitude_i=-85000000,
    altitude=400, position_precision=14, num_online_local_nodes=33, has_opted_report_location=True))))
# Undecodable, encrypted, unknown.
add("private_app_binary", packet(T.PRIVATE_APP, bytes(range(256))[:233]))
add("unknown_port_number", packet(300, b"\x01\x02"))
add("text_with_malformed_inner_payload_on_position_port", packet(T.POSITION_APP, b"\xff\xff\xff"))
e = mesh_pb2.MeshPacket(); setattr(e, "from", SENDER); e.to = 0xFFFFFFFF; e.id = 5; e.channel = 8; e.encrypted = bytes(range(48))
add("encrypted_packet", mesh_pb2.FromRadio(packet=e))
pk = mesh_pb2.MeshPacket(); setattr(pk, "from", SENDER); pk.to = LOCAL; pk.id = 6; pk.pki_encrypted = True; pk.public_key = bytes(32); pk.encrypted = b"\x00" * 16
add("pki_encrypted_packet", mesh_pb2.FromRadio(packet=pk))
# An unknown field (number 99, varint) inside MeshPacket and one (100) at FromRadio level.
inner = packet(T.TEXT_MESSAGE_APP, b"unknown fields").packet.SerializeToString() + bytes([0x98, 0x06, 0x2A])
entries.append(("unknown_fields", bytes([0x12, len(inner)]) + inner + bytes([0xA0, 0x06, 0x01])))
odd = packet(T.TEXT_MESSAGE_APP, b"p")
odd.packet.priority = 99
add("unknown_priority_number", odd)
# Handshake and other FromRadio variants.
add("my_info", mesh_pb2.FromRadio(my_info=mesh_pb2.MyNodeInfo(my_node_num=LOCAL, reboot_count=3, min_app_version=30200, device_id=bytes(16), pio_env="heltec-v3", nodedb_count=40)))
add("node_info", mesh_pb2.FromRadio(node_info=mesh_pb2.NodeInfo(num=SENDER, user=mesh_pb2.User(id="!1a2b3c4d", long_name="Roof", short_name="RF"),
    snr=9.5, last_heard=1763900000, hops_away=2, device_metrics=telemetry_pb2.DeviceMetrics(battery_level=80, voltage=3.9), is_favorite=True)))
add("metadata", mesh_pb2.FromRadio(metadata=mesh_pb2.DeviceMetadata(firmware_version="2.7.11.abcdef", device_state_version=24, hasBluetooth=True, hasPKC=True, hw_model=mesh_pb2.HardwareModel.TBEAM)))
add("channel_primary", mesh_pb2.FromRadio(channel=channel_pb2.Channel(index=0, role=channel_pb2.Channel.PRIMARY,
    settings=channel_pb2.ChannelSettings(psk=b"\x01", name="", uplink_enabled=True, module_settings=channel_pb2.ModuleSettings(position_precision=13)))))
add("channel_disabled", mesh_pb2.FromRadio(channel=channel_pb2.Channel(index=7)))
add("config_lora", mesh_pb2.FromRadio(config=config_pb2.Config(lora=config_pb2.Config.LoRaConfig(use_preset=True, modem_preset=config_pb2.Config.LoRaConfig.LONG_FAST,
    region=config_pb2.Config.LoRaConfig.EU_868, hop_limit=3, tx_enabled=True, tx_power=27, sx126x_rx_boosted_gain=True))))
add("config_device", mesh_pb2.FromRadio(config=config_pb2.Config(device=config_pb2.Config.DeviceConfig(role=config_pb2.Config.DeviceConfig.CLIENT_MUTE, node_info_broadcast_secs=10800))))
add("config_device_buzzer", mesh_pb2.FromRadio(config=config_pb2.Config(device=config_pb2.Config.DeviceConfig(buzzer_mode=config_pb2.Config.DeviceConfig.DIRECT_MSG_ONLY, tzdef="CET-1CEST"))))
add("config_sessionkey", mesh_pb2.FromRadio(config=config_pb2.Config(sessionkey=config_pb2.Config.SessionkeyConfig())))
C = config_pb2.Config
add("config_power_64bit", mesh_pb2.FromRadio(config=C(power=C.PowerConfig(is_power_saving=True, adc_multiplier_override=3.2, powermon_enables=18446744073709551615))))
add("config_network", mesh_pb2.FromRadio(config=C(network=C.NetworkConfig(wifi_enabled=True, wifi_ssid="mesh", address_mode=C.NetworkConfig.STATIC,
    ipv4_config=C.NetworkConfig.IpV4Config(ip=0x0A00000A, gateway=0x0A000001, subnet=0xFFFFFF00, dns=0x08080808), enabled_protocols=1))))
add("config_display", mesh_pb2.FromRadio(config=C(display=C.DisplayConfig(screen_on_secs=60, units=C.DisplayConfig.IMPERIAL,
    oled=C.DisplayConfig.OLED_SH1106, displaymode=C.DisplayConfig.COLOR, compass_orientation=C.DisplayConfig.DEGREES_270_INVERTED, use_12h_clock=True))))
add("config_position", mesh_pb2.FromRadio(config=config_pb2.Config(position=config_pb2.Config.PositionConfig(position_broadcast_secs=900, gps_mode=config_pb2.Config.PositionConfig.ENABLED))))
add("module_config_mqtt", mesh_pb2.FromRadio(moduleConfig=module_config_pb2.ModuleConfig(mqtt=module_config_pb2.ModuleConfig.MQTTConfig(enabled=True, address="mqtt.example.org", root="msh/EU_868"))))
add("module_config_telemetry", mesh_pb2.FromRadio(moduleConfig=module_config_pb2.ModuleConfig(telemetry=module_config_pb2.ModuleConfig.TelemetryConfig(device_update_interval=1800))))
M = module_config_pb2.ModuleConfig
add("module_config_serial", mesh_pb2.FromRadio(moduleConfig=M(serial=M.SerialConfig(enabled=True, baud=M.SerialConfig.BAUD_38400, mode=M.SerialConfig.NMEA, timeout=15))))
add("module_config_external_notification", mesh_pb2.FromRadio(moduleConfig=M(external_notification=M.ExternalNotificationConfig(enabled=True, output_ms=1000, alert_bell_buzzer=True, nag_timeout=60))))
add("module_config_store_forward", mesh_pb2.FromRadio(moduleConfig=M(store_forward=M.StoreForwardConfig(enabled=True, records=3000, history_return_max=100, is_server=True))))
add("module_config_range_test", mesh_pb2.FromRadio(moduleConfig=M(range_test=M.RangeTestConfig(enabled=True, sender=30, save=True))))
add("module_config_canned_message", mesh_pb2.FromRadio(moduleConfig=M(canned_message=M.CannedMessageConfig(enabled=True, inputbroker_event_cw=M.CannedMessageConfig.UP, allow_input_source="rotEnc1"))))
add("module_config_audio", mesh_pb2.FromRadio(moduleConfig=M(audio=M.AudioConfig(codec2_enabled=True, bitrate=M.AudioConfig.CODEC2_700B))))
add("module_config_remote_hardware", mesh_pb2.FromRadio(moduleConfig=M(remote_hardware=M.RemoteHardwareConfig(enabled=True,
    available_pins=[module_config_pb2.RemoteHardwarePin(gpio_pin=4, name="relay", type=module_config_pb2.DIGITAL_WRITE)]))))
add("module_config_neighbor_info", mesh_pb2.FromRadio(moduleConfig=M(neighbor_info=M.NeighborInfoConfig(enabled=True, update_interval=14400, transmit_over_lora=True))))
add("module_config_ambient_lighting", mesh_pb2.FromRadio(moduleConfig=M(ambient_lighting=M.AmbientLightingConfig(led_state=True, current=10, red=255))))
add("module_config_detection_sensor", mesh_pb2.FromRadio(moduleConfig=M(detection_sensor=M.DetectionSensorConfig(enabled=True, name="Door", detection_trigger_type=M.DetectionSensorConfig.RISING_EDGE))))
add("module_config_paxcounter", mesh_pb2.FromRadio(moduleConfig=M(paxcounter=M.PaxcounterConfig(enabled=True, paxcounter_update_interval=900, wifi_threshold=-80, ble_threshold=-80))))
add("module_config_status_message", mesh_pb2.FromRadio(moduleConfig=M(statusmessage=M.StatusMessageConfig(node_status="on duty"))))
add("module_config_traffic_management", mesh_pb2.FromRadio(moduleConfig=M(traffic_management=M.TrafficManagementConfig(enabled=True, rate_limit_window_secs=60, rate_limit_max_packets=10))))
add("module_config_tak", mesh_pb2.FromRadio(moduleConfig=M(tak=M.TAKConfig(team=atak_pb2.Cyan, role=atak_pb2.Medic))))
UI = device_ui_pb2
add("device_ui_config", mesh_pb2.FromRadio(deviceuiConfig=UI.DeviceUIConfig(version=1, screen_brightness=128, theme=UI.LIGHT, language=UI.GERMAN,
    node_filter=UI.NodeFilter(hops_away=3, node_name="Roof"), map_data=UI.Map(home=UI.GeoPoint(zoom=10, latitude=47, longitude=8), style="topo"),
    compass_mode=UI.FIXED_RING, gps_format=UI.DeviceUIConfig.MGRS, calibration_data=b"\x01\x02")))
add("config_device_ui", mesh_pb2.FromRadio(config=config_pb2.Config(device_ui=UI.DeviceUIConfig(screen_timeout=30, is_clockface_analog=True))))
add("queue_status", mesh_pb2.FromRadio(queueStatus=mesh_pb2.QueueStatus(res=0, free=15, maxlen=16, mesh_packet_id=0x01020304)))
add("log_record", mesh_pb2.FromRadio(log_record=mesh_pb2.LogRecord(message="Radio init ok", time=1763900000, source="RadioIf", level=mesh_pb2.LogRecord.INFO)))
add("client_notification", mesh_pb2.FromRadio(clientNotification=mesh_pb2.ClientNotification(reply_id=7, time=1763900000, level=mesh_pb2.LogRecord.WARNING, message="Text messages can only be sent once every 2 seconds")))
add("client_notification_key_verification", mesh_pb2.FromRadio(clientNotification=mesh_pb2.ClientNotification(level=mesh_pb2.LogRecord.INFO,
    message="verify", key_verification_number_inform=mesh_pb2.KeyVerificationNumberInform(nonce=18446744073709551000, remote_longname="Roof", security_number=123456))))
add("client_notification_duplicated_key", mesh_pb2.FromRadio(clientNotification=mesh_pb2.ClientNotification(reply_id=0, duplicated_public_key=mesh_pb2.DuplicatedPublicKey())))
add("mqtt_client_proxy_data", mesh_pb2.FromRadio(mqttClientProxyMessage=mesh_pb2.MqttClientProxyMessage(topic="msh/EU_868/2/e/LongFast/!1a2b3c4d", data=bytes(range(40)), retained=False)))
add("mqtt_client_proxy_text", mesh_pb2.FromRadio(mqttClientProxyMessage=mesh_pb2.MqttClientProxyMessage(topic="msh/EU_868/2/json", text='{"a":1}', retained=True)))
add("xmodem_packet", mesh_pb2.FromRadio(xmodemPacket=xmodem_pb2.XModem(control=xmodem_pb2.XModem.SOH, seq=1, crc16=0xBEEF, buffer=b"chunk")))
add("lockdown_status", mesh_pb2.FromRadio(lockdown_status=mesh_pb2.LockdownStatus(state=mesh_pb2.LockdownStatus.LOCKED, lock_reason="pin", boots_remaining=2)))
add("file_info", mesh_pb2.FromRadio(fileInfo=mesh_pb2.FileInfo(file_name="/prefs/db.proto", size_bytes=4096)))
add("rebooted", mesh_pb2.FromRadio(rebooted=True))
add("config_complete", mesh_pb2.FromRadio(config_complete_id=0xCAFE1234))
add("from_radio_with_id", mesh_pb2.FromRadio(id=4294967295, queueStatus=mesh_pb2.QueueStatus(free=0, maxlen=16)))

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fromradio.txt")
with open(path, "w") as out:
    out.write("# name<TAB>FromRadio as hex. Generated by make_corpus.py with the official meshtastic package.\n")
    for name, data in entries:
        out.write(f"{name}\t{data.hex()}\n")
print(f"{len(entries)} entries -> {path}")
