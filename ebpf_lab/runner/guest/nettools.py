"""Runs in the lab VM: crafted packets, a veth pair into a network namespace, and real traffic
through it (the networking chapter and its self-check).

Importable from any program the lab runs (`from nettools import veth_pair`), and callable from
the host as `python3 nettools.py COMMAND ...` (see ebpf_lab/inspect/netlab.py). Stdlib only.
"""
import contextlib
import ctypes
import json
import os
import socket
import struct
import subprocess
import sys
import time

ETH_P_IP = 0x0800
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
PROTOCOL_NAMES = {IPPROTO_ICMP: "ICMP", IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP"}
XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TCP_SYN = 0x02
CLONE_NEWNET = 0x40000000

# -- packets ------------------------------------------------------------------------------------


def checksum(data):
    """The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(text):
    return bytes.fromhex(text.replace(":", ""))


def ethernet(payload, src="02:00:00:00:00:02", dst="02:00:00:00:00:01", ethertype=ETH_P_IP):
    """An Ethernet II frame: destination MAC, source MAC, ethertype (big-endian), payload."""
    return _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + payload


# Four bytes of IPv4 options (three no-ops and an end of list), which every stack accepts: a header of 24
# bytes, so a program that takes the transport header at ip + 1 reads these bytes as its ports.
NOP_OPTIONS = b"\x01\x01\x01\x00"


def ipv4(payload, protocol, src="10.11.0.2", dst="10.11.0.1", ttl=64, options=b""):
    """An IPv4 header (20 bytes, and `options`, a multiple of 4) with its checksum, then the payload."""
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | (5 + len(options) // 4), 0, 20 + len(options) + len(payload), 0,
                         0x4000, ttl, protocol, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def _pseudo_header(src, dst, protocol, length):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, protocol, length)


def udp(payload, sport, dport, src="10.11.0.2", dst="10.11.0.1"):
    """A UDP header (ports, length, checksum over the IPv4 pseudo-header) and payload."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    sum_ = checksum(_pseudo_header(src, dst, IPPROTO_UDP, len(segment)) + segment) or 0xFFFF
    return segment[:6] + struct.pack("!H", sum_) + segment[8:]


def tcp(sport, dport, flags=TCP_SYN, seq=1, src="10.11.0.2", dst="10.11.0.1"):
    """A 20-byte TCP header without options or payload (a SYN by default)."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    sum_ = checksum(_pseudo_header(src, dst, IPPROTO_TCP, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", sum_) + segment[18:]


def icmp_echo(ident=1, seq=1, payload=b"ebpf-lab"):
    """An ICMP echo request (type 8, code 0), as ping sends."""
    message = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


def udp_packet(dport, payload=b"hello", sport=40000, ip_options=b""):
    """A whole Ethernet frame carrying UDP from the namespace's address to the host's."""
    return ethernet(ipv4(udp(payload, sport, dport), IPPROTO_UDP, options=ip_options))


def tcp_packet(dport, sport=40000):
    return ethernet(ipv4(tcp(sport, dport), IPPROTO_TCP))


def icmp_packet():
    return ethernet(ipv4(icmp_echo(), IPPROTO_ICMP))


def truncated_udp_packet(dport):
    """Ethernet, an IPv4 header saying UDP, then only 2 of the UDP header's 8 bytes (the source
    port): the destination port lies past the end of the packet, where no program may read."""
    return udp_packet(dport)[:14 + 20 + 2]


def describe(frame):
    """What a frame says, in a few words: 'UDP 10.11.0.2:40000 -> 10.11.0.1:7777, 47 bytes'."""
    size = f"{len(frame)} bytes"
    if len(frame) < 14 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return f"not IPv4, {size}"
    if len(frame) < 34:
        return f"IPv4, header cut short, {size}"
    if frame[14] & 0x0F < 5:
        return f"IPv4 claiming a {(frame[14] & 0x0F) * 4}-byte header (20 at least): malformed, {size}"
    protocol = frame[23]
    src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
    name = PROTOCOL_NAMES.get(protocol, f"protocol {protocol}")
    l4 = 14 + (frame[14] & 0x0F) * 4
    if protocol in (IPPROTO_TCP, IPPROTO_UDP):
        if len(frame) < l4 + 4:
            return f"{name} {src} -> {dst}, cut short before the ports, {size}"
        sport, dport = struct.unpack_from("!HH", frame, l4)
        return f"{name} {src}:{sport} -> {dst}:{dport}, {size}"
    return f"{name} {src} -> {dst}, {size}"


# -- a veth pair into a network namespace -------------------------------------------------------


class VethPair:
    """`name`-host in this namespace, `name`-ns in the network namespace `name`, on 10.11.`subnet`.0/24."""

    def __init__(self, name, subnet=0):
        self.netns = name
        self.host, self.peer = f"{name}-host", f"{name}-ns"
        self.host_ip, self.peer_ip = f"10.11.{subnet}.1", f"10.11.{subnet}.2"

    def __repr__(self):
        return (f"<VethPair {self.host} {self.host_ip} <-> {self.peer} {self.peer_ip} "
                f"in netns {self.netns}>")

    def commands(self):
        """The shell commands that build the pair (IPv6 off before it is up: no chatter of its own),
        after removing what a killed run may have left."""
        ns, host, peer = self.netns, self.host, self.peer
        return [*self.down_commands(), f"ip netns add {ns}",
                f"ip link add {host} type veth peer name {peer} netns {ns}",
                f"echo 1 > /proc/sys/net/ipv6/conf/{host}/disable_ipv6",
                f"ip netns exec {ns} sh -c 'echo 1 > /proc/sys/net/ipv6/conf/{peer}/disable_ipv6'",
                f"ip addr add {self.host_ip}/24 dev {host}",
                f"ip -n {ns} addr add {self.peer_ip}/24 dev {peer}",
                f"ip link set {host} up", f"ip -n {ns} link set lo up", f"ip -n {ns} link set {peer} up"]

    def down_commands(self):
        """Delete the host end and the namespace (one end's deletion takes the other, and anything
        attached to it, along); quietly, whether they exist or not."""
        return [f"ip link del {self.host} 2>/dev/null || true", f"ip netns del {self.netns} 2>/dev/null || true"]

    def up(self):
        # One shell for all of it: every process costs in the lab VM.
        subprocess.run(["sh", "-ec", "\n".join(self.commands())], check=True, capture_output=True)
        return self

    def down(self):
        subprocess.run(["sh", "-c", "\n".join(self.down_commands())], capture_output=True)

    def netns_argv(self, *args):
        """argv running `nettools.py ARGS` inside the namespace."""
        return ["ip", "netns", "exec", self.netns, sys.executable, os.path.abspath(__file__), *map(str, args)]


@contextlib.contextmanager
def veth_pair(name="ch12", subnet=0):
    pair = VethPair(name, subnet).up()
    try:
        yield pair
    finally:
        pair.down()


# -- traffic ------------------------------------------------------------------------------------


def _ping(dst, count, ident):
    """Send `count` echo requests on a raw socket (needs root); the socket, to collect replies later."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ICMP)
    for seq in range(1, count + 1):
        s.sendto(icmp_echo(ident, seq), (dst, 0))
    return s


def _echo_replies(s, ident):
    s.setblocking(False)
    replies = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            packet = s.recv(2048)
            l4 = (packet[0] & 0x0F) * 4  # raw ICMP sockets receive the IP header too
            if packet[l4] == 0 and struct.unpack_from("!H", packet, l4 + 4)[0] == ident:
                replies += 1
    return replies


def send_mix(dst, udp, pings, tcp_port, timeout=60.0, udp_with_options=None):
    """Send from here: UDP datagrams ({port: count}; those of `udp_with_options` with IPv4 options,
    NOP_OPTIONS), `pings` echo requests, then one TCP connection to `tcp_port` carrying a line. The
    connection comes last on purpose: once its handshake is done, everything sent before it has gone
    through the receiving stack (one queue, in order), and every echo reply is already here. So
    nothing waits for what may never come."""
    ident = os.getpid() & 0xFFFF
    sent = {}
    for batch, options in ((udp, b""), (udp_with_options or {}, NOP_OPTIONS)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            if options:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, options)
            for port, count in batch.items():
                sent[port] = sent.get(port, 0) + sum(s.sendto(b"x" * 16, (dst, port)) == 16 for _ in range(count))
    icmp = _ping(dst, pings, ident)
    with icmp:
        try:
            with socket.create_connection((dst, tcp_port), timeout=timeout) as t:
                t.sendall(b"hello over TCP\n")
            connected = True
        except OSError:
            connected = False
        replies = _echo_replies(icmp, ident)
    return {"udp_sent": sent, "pings": pings, "echo_replies": replies, "tcp_connected": connected}


def stream(dst, seconds, udp_port=9999, tcp_port=9998):
    """Steady traffic for `seconds`: every 0.1 s a UDP datagram, every 0.5 s a ping, every
    second a TCP connection attempt (refused or not, the SYN goes out). For live charts."""
    ident = os.getpid() & 0xFFFF
    end = time.monotonic() + seconds
    tick = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
            socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ICMP) as icmp:
        while time.monotonic() < end:
            u.sendto(b"x" * 16, (dst, udp_port))
            if tick % 5 == 0:
                icmp.sendto(icmp_echo(ident, tick), (dst, 0))
            if tick % 10 == 0:
                with contextlib.suppress(OSError), socket.create_connection((dst, tcp_port), timeout=2):
                    pass
            tick += 1
            time.sleep(0.1)


@contextlib.contextmanager
def _listeners(ip, udp_ports, tcp_port):
    """UDP sockets bound to `udp_ports`, and a TCP socket listening on `tcp_port` (the kernel
    completes handshakes and queues data without anyone calling accept)."""
    udps = {}
    try:
        for port in udp_ports:
            udps[port] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udps[port].bind((ip, port))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((ip, tcp_port))
            server.listen(8)
            yield udps
    finally:
        for s in udps.values():
            s.close()


def in_netns(name, fn, *args):
    """fn(*args) run in a child process that entered network namespace `name`; its result (JSON-able)."""
    # Here, not at the top: the host imports this module for its packet crafting, without labtools.
    import labtools

    def enter():
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}: {os.strerror(ctypes.get_errno())}")

    try:
        return labtools.in_child(enter, fn, *args)
    except RuntimeError as e:
        raise RuntimeError(f"in network namespace {name}: {e}") from None


def _drain(s):
    s.setblocking(False)
    got = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            s.recv(2048)
            got += 1
    return got


def exchange(pair, udp, pings=0, tcp_port=7777, udp_with_options=None):
    """Listen on the host end, send the mix (see `send_mix`) from the namespace, and report what
    was sent and what arrived: {"sent": ..., "received": {port: datagrams}}."""
    with _listeners(pair.host_ip, sorted({*udp, *(udp_with_options or {})}), tcp_port) as udps:
        sent = in_netns(pair.netns, send_mix, pair.host_ip, udp, pings, tcp_port, 60.0, udp_with_options)
        # The sender's TCP handshake came after its datagrams: those that made it are queued here.
        received = {port: _drain(s) for port, s in udps.items()}
    return {"sent": sent, "received": received}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "exchange":  # NAME SUBNET UDP_JSON PINGS TCP_PORT [UDP_WITH_OPTIONS_JSON]
        pair = VethPair(args[0], int(args[1]))
        udp, with_options = ({int(k): v for k, v in json.loads(a).items()} for a in (args[2], (args[5:] or ["{}"])[0]))
        print(json.dumps(exchange(pair, udp, int(args[3]), int(args[4]), with_options)))
    elif command == "stream":  # DST SECONDS (inside the namespace)
        try:
            stream(args[0], float(args[1]))
        except KeyboardInterrupt:
            pass  # a %%bcc run's stop reaches its whole process group: the sender just ends
    else:
        raise SystemExit(f"nettools: unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
