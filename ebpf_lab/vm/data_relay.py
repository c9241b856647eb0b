"""Hands a guest's data-channel connection to the host process that waits for it (stdlib only).

qemu runs this once per connection the guest opens to the data channel (a `guestfwd` rule),
with the connection on stdin. The first line is a run's token; the `Run` that made it listens
on <directory>/<token>.sock. This script passes the connection itself to that socket
(SCM_RIGHTS) and exits, so the run's frames flow from the guest to the `Run` with no copy
in between and no encryption: the connection never leaves this machine (qemu's user network).

Usage (by qemu): python3 -I data_relay.py DIRECTORY
"""
import os
import re
import signal
import socket
import sys

TOKEN = re.compile(rb"[0-9a-f]{32}")
TOKEN_SECONDS = 10  # a guest that connects and says nothing does not keep this process


def read_token(fd: int) -> bytes | None:
    line = b""
    while not line.endswith(b"\n") and len(line) <= 64:
        got = os.read(fd, 1)  # byte by byte: what follows the token belongs to the run
        if not got:
            return None
        line += got
    token = line.rstrip(b"\n")
    return token if TOKEN.fullmatch(token) else None


def main(directory: str) -> int:
    signal.alarm(TOKEN_SECONDS)
    token = read_token(0)
    if token is None:
        return 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waiting:
        try:
            waiting.connect(os.path.join(directory, token.decode() + ".sock"))
            socket.send_fds(waiting, [b"c"], [0])
        except OSError:
            return 1  # no run waits for this token: the guest's connection closes, it keeps using ssh
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
