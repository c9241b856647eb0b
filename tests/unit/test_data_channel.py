"""The host's end of the data channel with the real relay script, a socketpair standing in for qemu's
guestfwd connection (the VM tests use the real one)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from ebpf_lab.runner import protocol
from ebpf_lab.runner.data_channel import DataChannel
from ebpf_lab.transport.target import DataChannelRoute

RELAY = Path(__file__).resolve().parents[2] / "ebpf_lab" / "vm" / "data_relay.py"


def relay(listen_dir: Path, guest_end: socket.socket) -> subprocess.Popen:
    """What qemu does for each connection to the channel's address: the relay, with the connection on stdin."""
    return subprocess.Popen([sys.executable, "-I", str(RELAY), str(listen_dir)], stdin=guest_end.fileno(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_relay_hands_the_guests_connection_to_the_run_that_waits(tmp_path):
    channel = DataChannel(DataChannelRoute("10.0.2.100", 7700, tmp_path))
    assert channel.spec.token in os.listdir(tmp_path)[0]
    guest, qemu_end = socket.socketpair()
    proc = relay(tmp_path, qemu_end)
    qemu_end.close()
    guest.sendall(channel.spec.token.encode() + b"\n" + b"o early frame\n")
    r, w = os.pipe()  # ssh's stdout, silent
    with os.fdopen(r, "rb") as ssh_stdout:
        stream = channel.wait(ssh_stdout)
    os.close(w)
    assert proc.wait(10) == 0
    assert stream is not None and os.listdir(tmp_path) == []  # the listener is gone once taken
    assert guest.recv(16) == protocol.CHANNEL_ACK
    guest.sendall(b"o later frame\n")
    guest.close()
    assert stream.read() == b"o early frame\no later frame\n"
    stream.close()
    channel.close()


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:  # unread bytes left behind turn the close into a reset
        return True


def test_a_wrong_token_reaches_no_run(tmp_path):
    channel = DataChannel(DataChannelRoute("10.0.2.100", 7700, tmp_path))
    for said in (b"f" * 32 + b"\n", b"../../etc/passwd\n", b"x" * 200):
        guest, qemu_end = socket.socketpair()
        proc = relay(tmp_path, qemu_end)
        qemu_end.close()
        guest.sendall(said)
        assert proc.wait(10) == 1
        assert closed(guest)  # the supervisor keeps to ssh
        guest.close()
    channel.close()
    assert os.listdir(tmp_path) == []


def test_ssh_speaking_first_means_no_channel(tmp_path):
    channel = DataChannel(DataChannelRoute("10.0.2.100", 7700, tmp_path))
    r, w = os.pipe()
    os.write(w, b"c {}\n")
    with os.fdopen(r, "rb") as ssh_stdout:
        assert channel.wait(ssh_stdout) is None
    os.close(w)
    assert os.listdir(tmp_path) == []
    channel.close()
