"""A run's end of the data channel: where its frames arrive without ssh (see protocol.py).

The run listens on a Unix socket named by a fresh token, in the directory the machine's route
names; the guest's supervisor connects to the route's address and sends the token, and the
host-side relay (vm/data_relay.py) hands that TCP connection over to this socket. The token is
secret to the run (it travels in the header, over ssh), so no other guest process can take the
run's place.
"""
from __future__ import annotations

import secrets
import select
import socket
from pathlib import Path
from typing import BinaryIO

from ..transport.target import DataChannelRoute
from . import protocol


class DataChannel:
    def __init__(self, route: DataChannelRoute) -> None:
        self.token = secrets.token_hex(16)
        self.spec = protocol.DataChannel(route.guest_host, route.guest_port, self.token)
        self._path: Path | None = route.listen_dir / f"{self.token}.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self._path))
        self._listener.listen(1)
        self.connection: socket.socket | None = None

    def wait(self, ssh_stdout: BinaryIO) -> BinaryIO | None:
        """The channel's stream once the supervisor opened it, or None if ssh's stdout speaks first
        (the supervisor could not reach the channel, or the run is over before it began)."""
        try:
            while True:
                ready, _, _ = select.select([self._listener, ssh_stdout], [], [])
                if ssh_stdout in ready:
                    return None
                conn = self._take()
                if conn is not None:
                    self.connection = conn
                    return conn.makefile("rb")
        finally:
            self.close_listener()

    def _take(self) -> socket.socket | None:
        relay, _ = self._listener.accept()
        with relay:
            try:
                _, fds, _, _ = socket.recv_fds(relay, 16, 1)
            except OSError:
                return None
        if not fds:
            return None
        conn = socket.socket(fileno=fds[0])
        try:
            conn.sendall(protocol.CHANNEL_ACK)
        except OSError:
            conn.close()
            return None
        return conn

    def cut(self) -> None:
        """End the channel's stream (when ssh is gone and the guest says nothing more)."""
        if self.connection is not None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close_listener(self) -> None:
        self._listener.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    def close(self) -> None:
        self.close_listener()
        if self.connection is not None:
            self.connection.close()
