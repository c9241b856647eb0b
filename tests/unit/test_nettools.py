"""Chapter 12's crafted packets and the verifier's reason, checked here on the host (stdlib only)."""
import socket
import struct

from ebpf_lab.inspect.netlab import protocol_label
from ebpf_lab.runner.guest import nettools as nt


def test_udp_frame_has_the_layout_and_checksums_a_kernel_accepts():
    frame = nt.udp_packet(7777, payload=b"hello")
    assert len(frame) == 14 + 20 + 8 + 5
    assert frame[12:14] == b"\x08\x00" and frame[14] == 0x45 and frame[23] == nt.IPPROTO_UDP
    assert struct.unpack_from("!H", frame, 16)[0] == 20 + 8 + 5          # IP total length
    assert nt.checksum(frame[14:34]) == 0                                # header checksum verifies
    assert socket.inet_ntoa(frame[26:30]) == "10.11.0.2" and socket.inet_ntoa(frame[30:34]) == "10.11.0.1"
    assert struct.unpack_from("!HHH", frame, 34) == (40000, 7777, 8 + 5)
    pseudo = frame[26:34] + struct.pack("!BBH", 0, nt.IPPROTO_UDP, 13)
    assert nt.checksum(pseudo + frame[34:]) == 0                         # UDP checksum verifies


def test_tcp_and_icmp_frames_and_their_descriptions():
    tcp = nt.tcp_packet(7777)
    assert tcp[23] == nt.IPPROTO_TCP and tcp[34 + 13] == nt.TCP_SYN and len(tcp) == 14 + 20 + 20
    assert nt.checksum(tcp[26:34] + struct.pack("!BBH", 0, 6, 20) + tcp[34:]) == 0
    icmp = nt.icmp_packet()
    assert icmp[23] == nt.IPPROTO_ICMP and icmp[34] == 8 and nt.checksum(icmp[34:]) == 0
    assert nt.describe(nt.udp_packet(7777, b"")) == "UDP 10.11.0.2:40000 -> 10.11.0.1:7777, 42 bytes"
    assert nt.describe(icmp) == "ICMP 10.11.0.2 -> 10.11.0.1, 50 bytes"
    assert nt.describe(nt.truncated_udp_packet(7777)).startswith("UDP 10.11.0.2 -> 10.11.0.1, cut short")
    malformed = bytearray(nt.udp_packet(53))
    malformed[14] = 0x44
    assert nt.describe(bytes(malformed)).startswith("IPv4 claiming a 16-byte header (20 at least): malformed")
    assert len(nt.truncated_udp_packet(7777)) == 36
    assert nt.describe(nt.ethernet(b"", ethertype=0x0806)) == "not IPv4, 14 bytes"


def test_checksum_is_rfc1071():
    # RFC 1071's example words sum to ddf2 (ones' complement), so the checksum is 220d.
    assert nt.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert nt.checksum(b"\x01") == nt.checksum(b"\x01\x00")


def test_veth_pair_names_and_commands():
    pair = nt.VethPair("ch12", subnet=3)
    assert (pair.host, pair.peer, pair.host_ip, pair.peer_ip) == ("ch12-host", "ch12-ns", "10.11.3.1", "10.11.3.2")
    commands = pair.commands()
    # What a killed run left goes first, quietly; then the namespace.
    assert commands[:3] == [*pair.down_commands(), "ip netns add ch12"] and "|| true" in commands[0]
    # IPv6 goes off before the links come up, so the pair sends nothing of its own.
    assert max(i for i, c in enumerate(commands) if "disable_ipv6" in c) < min(
        i for i, c in enumerate(commands) if c.endswith(" up"))


def test_protocol_labels():
    assert protocol_label(17) == "UDP (17)" and protocol_label(132) == "protocol (132)"
