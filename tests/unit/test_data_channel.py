"""The host's end of the data channel against a stand-in for qemu's serial-port socket (the VM tests
use the real port): leasing a port, the token handshake, and when the run keeps to ssh."""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from ebpf_lab.runner import protocol
from ebpf_lab.runner.data_channel import DataChannel
from ebpf_lab.transport.target import DataChannelRoute


class FakePort:
    """qemu's end of one serial port: a listening socket; `guest` is what the guest reads and writes."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(1)
        self.guest: socket.socket | None = None
        self._accepted = threading.Thread(target=self._accept, daemon=True)
        self._accepted.start()

    def _accept(self) -> None:
        self.guest, _ = self.server.accept()

    def connected(self) -> socket.socket:
        self._accepted.join(5)
        assert self.guest is not None
        return self.guest


def route_of(tmp_path: Path, count: int) -> tuple[DataChannelRoute, list[FakePort]]:
    ports = [(f"ebpf-lab.data{k}", tmp_path / f"port{k}.sock") for k in range(1, count + 1)]
    return DataChannelRoute(tuple(ports)), [FakePort(path) for _, path in ports]


def silent_ssh():
    r, w = os.pipe()
    return os.fdopen(r, "rb"), w


def test_a_run_leases_a_free_port_and_hears_its_token(tmp_path):
    route, ports = route_of(tmp_path, 2)
    first, second = DataChannel.lease(route), DataChannel.lease(route)
    assert (first.spec.port, second.spec.port) == ("ebpf-lab.data1", "ebpf-lab.data2")
    assert DataChannel.lease(route) is None  # all taken: that run uses ssh
    guest = ports[0].connected()
    # Whatever an earlier run left on the port comes before this run's token and is not this run's.
    # The supervisor's first frame follows its confirmation at once: the stream starts right there.
    guest.sendall(b"o stale\n" + first.token.encode() + b"\n")
    guest.sendall(protocol.channel_open(first.token) + b"o a frame\n")
    ssh_stdout, w = silent_ssh()
    stream = first.wait(ssh_stdout)
    assert stream is not None
    assert guest.recv(100) == protocol.channel_ack(first.token)
    assert stream.readline() == b"o a frame\n"
    first.close()
    os.close(w)
    ssh_stdout.close()
    third = DataChannel.lease(route)  # the port is free again once the run let go of it
    assert third is not None and third.spec.port == "ebpf-lab.data1"
    for channel in (second, third):
        channel.close()


def test_ssh_speaking_first_means_no_channel(tmp_path):
    route, _ = route_of(tmp_path, 1)
    channel = DataChannel.lease(route)
    ssh_stdout, w = silent_ssh()
    os.write(w, b"c {}\n")
    assert channel.wait(ssh_stdout) is None
    channel.close()
    os.close(w)
    ssh_stdout.close()


def test_a_supervisor_that_missed_the_answer_keeps_to_ssh_and_so_does_the_host(tmp_path):
    route, ports = route_of(tmp_path, 1)
    channel = DataChannel.lease(route)
    guest = ports[0].connected()
    guest.sendall(channel.token.encode() + b"\n")
    ssh_stdout, w = silent_ssh()
    answers = []

    def supervisor_gave_up():
        answers.append(guest.recv(100))  # the host answered, too late: no confirmation follows
        os.write(w, b"c {}\n")  # the frames go over ssh instead

    threading.Thread(target=supervisor_gave_up, daemon=True).start()
    assert channel.wait(ssh_stdout) is None
    assert answers == [protocol.channel_ack(channel.token)]
    channel.close()
    os.close(w)
    ssh_stdout.close()


def test_no_port_to_lease_when_the_vm_went_down(tmp_path):
    assert DataChannel.lease(DataChannelRoute((("ebpf-lab.data1", tmp_path / "gone" / "port1.sock"),))) is None


def test_a_port_qemu_does_not_listen_on_is_skipped(tmp_path):
    route, ports = route_of(tmp_path, 2)
    ports[0].server.close()
    os.unlink(tmp_path / "port1.sock")
    channel = DataChannel.lease(route)
    assert channel is not None and channel.spec.port == "ebpf-lab.data2"
    channel.close()
