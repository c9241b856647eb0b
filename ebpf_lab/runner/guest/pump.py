"""Forwards what the program makes (stdout, stderr, notes, and records unless the program writes them to
the host's data channel itself) to the host, in the order it was made.

Output and notes come through different channels (two pipes and a socket), and a reader can
not tell which of two channels was written first. Notes are therefore synchronous: the program
sends a note and waits for an acknowledgement, and before acknowledging, the pump forwards
everything already in the pipes. So "compiled" reaches the host after the compiler's warnings
and before the first line the program prints once compiled, however slow the machine is.

One thread reads all three channels, so nothing else competes with it for the interpreter.
"""
import os
import selectors

import protocol

READ_BYTES = 64 * 1024


class LineSplitter:
    """Bytes from a pipe -> frames of whole lines; a line longer than MAX_LINE arrives split."""

    def __init__(self, kind):
        self.kind = kind
        self._partial = b""

    def feed(self, data):
        buf, start, frames = self._partial + data, 0, []
        while True:
            end = buf.find(b"\n", start, start + protocol.MAX_LINE)
            if end >= 0:
                frames.append(protocol.frame(self.kind, buf[start:end]))
                start = end + 1
            elif len(buf) - start >= protocol.MAX_LINE:
                frames.append(protocol.frame(self.kind, buf[start:start + protocol.MAX_LINE]))
                start += protocol.MAX_LINE
            else:
                break
        self._partial = buf[start:]
        return frames

    def end(self):
        """The last line, if it had no newline."""
        rest, self._partial = self._partial, b""
        return [protocol.frame(self.kind, rest)] if rest else []


class Pump:
    """Reads the program's channels until all are closed.

    `forward(data, output)` gets frames in order (`output`: program output or records, which may
    start the run's clock); `on_note(frame)` gets each control frame and SYNC the program sent, once
    everything written before it is forwarded, and forwards what of it should reach the host.
    When the program writes its records to the host itself, `on_sync()` returns once what was
    forwarded is with the host, and every acknowledgement waits for it (see protocol.SYNC).
    """

    def __init__(self, out_fd, err_fd, sock, message_max, forward, on_note, on_sync=None):
        self._sock = sock
        # One buffer for every message: a fresh bytes object of message_max per recv() would cost the
        # guest page faults for all of it each time (most messages are far smaller).
        self._buffer = bytearray(message_max)
        self._view = memoryview(self._buffer)
        self._forward = forward
        self._on_note = on_note
        self._on_sync = on_sync
        self._pipes = {out_fd: LineSplitter(protocol.OUT), err_fd: LineSplitter(protocol.ERR)}
        self._sel = selectors.DefaultSelector()
        for fd in self._pipes:
            os.set_blocking(fd, False)
            self._sel.register(fd, selectors.EVENT_READ)
        sock.setblocking(False)
        self._sel.register(sock, selectors.EVENT_READ)

    def run(self):
        while self._sel.get_map():
            for key, _ in self._sel.select():
                if key.fileobj is self._sock:
                    self._read_socket()
                elif key.fd in self._pipes:
                    self._read_pipe(key.fd)
        self._sel.close()

    def _read_pipe(self, fd, until_empty=False):
        """Forward what one pipe holds: one read, or (before a note) until it is empty."""
        while fd in self._pipes:
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            splitter = self._pipes[fd]
            frames = splitter.feed(data) if data else splitter.end()
            if frames:
                self._forward(b"".join(frames), True)
            if not data:
                self._sel.unregister(fd)
                del self._pipes[fd]
                os.close(fd)
            if not until_empty:
                return

    def _read_socket(self):
        while True:
            try:
                message = self._view[:self._sock.recv_into(self._buffer)].tobytes()
            except BlockingIOError:
                return
            except ConnectionResetError:
                # The program ended with an acknowledgement unread (it sent a note without waiting).
                # Linux reports that once, ahead of the messages still queued: they come next.
                continue
            except OSError:
                message = b""
            if not message:
                self._sel.unregister(self._sock)
                self._sock.close()
                return
            if message == protocol.SYNC:
                self._on_note(message)
                self._acknowledge()
                continue
            if not message.startswith(protocol.CONTROL + b" "):
                self._forward(message if message.endswith(b"\n") else message + b"\n", True)
                continue
            # What the program wrote before this note is in the pipes now: it goes first.
            for fd in list(self._pipes):
                self._read_pipe(fd, until_empty=True)
            self._on_note(message.rstrip(b"\n"))
            self._acknowledge()

    def _acknowledge(self):
        if self._on_sync is not None:
            self._on_sync()
        try:
            self._sock.send(protocol.NOTE_ACK)
        except OSError:
            pass  # the program is gone or does not wait
