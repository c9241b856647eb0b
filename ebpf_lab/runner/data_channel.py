"""A run's end of the data channel: a serial port of the VM that carries its frames instead of ssh.

qemu listens on a Unix socket per port (see vm/embedded.py). A run leases a free port with an
exclusive lock on a file beside its socket (so two runs, even from two Jupyter kernels, never share
one), connects, and names the port and a fresh token in its header. The supervisor opens the port
in the guest, writes the token, and, once the host has answered, confirms and sends its frames
there (protocol.py).
The port is a stream with no end of its own: the run's frames end with EXIT, and the port is
free again when the run lets go of the lock.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import select
import socket
from typing import BinaryIO

from ..transport.target import DataChannelRoute
from . import protocol


class DataChannel:
    def __init__(self, port: str, sock: socket.socket, lock_fd: int) -> None:
        self.token = secrets.token_hex(16)
        self.spec = protocol.DataChannel(port, self.token)
        self._sock = sock
        self._lock_fd: int | None = lock_fd
        self._stream: BinaryIO | None = None

    @classmethod
    def lease(cls, route: DataChannelRoute) -> "DataChannel | None":
        """A free port of the route, connected; None when all are taken (the run then uses ssh)."""
        for name, path in route.ports:
            try:
                lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue  # the VM went down since the target was read: ssh says so clearly
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(lock_fd)
                continue
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
            except OSError:
                sock.close()
                os.close(lock_fd)
                continue
            return cls(name, sock, lock_fd)
        return None

    def wait(self, ssh_stdout: BinaryIO) -> BinaryIO | None:
        """The port's stream once the supervisor has confirmed it (after its token and our answer), or
        None if ssh's stdout speaks first: the supervisor could not open the port, did not hear our
        answer in time, or the run ended before it began."""
        # What came before the token on the port was not this run's.
        if not self._read_through(b"\n" + self.token.encode() + b"\n", ssh_stdout):
            return None
        try:
            self._sock.sendall(protocol.channel_ack(self.token))
        except OSError:
            return None
        if not self._read_through(b"\n" + protocol.channel_open(self.token), ssh_stdout):
            return None
        self._stream = self._sock.makefile("rb")  # the supervisor's frames follow the confirmation
        return self._stream

    def _read_through(self, marker: bytes, ssh_stdout: BinaryIO) -> bool:
        """Take what the port says up to and including `marker`, and nothing after it (the stream
        starts there); False if ssh's stdout speaks first or the port closes. `marker` begins with the
        newline that ends the line before it, which the last call took."""
        seen = b"\n"  # the tail of what was taken, for a marker split across two reads
        while True:
            ready, _, _ = select.select([self._sock, ssh_stdout], [], [])
            if ssh_stdout in ready:
                return False
            ahead = self._sock.recv(4096, socket.MSG_PEEK)
            if not ahead:
                return False
            window = seen + ahead
            at = window.find(marker)
            if at >= 0:
                self._sock.recv(at + len(marker) - len(seen))
                return True
            self._sock.recv(len(ahead))
            seen = window[-len(marker):]

    def cut(self) -> None:
        """End the port's stream for the reader (when ssh is gone and the guest says nothing more)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Let go of the port: disconnect, then free it for the next run."""
        if self._stream is not None:
            self._stream.close()
        self._sock.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the lock goes with the file's last descriptor
            self._lock_fd = None

