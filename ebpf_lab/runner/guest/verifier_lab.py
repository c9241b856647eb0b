"""Runs in the lab VM: load functions of a compiled bcc program one by one and keep the verifier's
log, accepted or not, and run XDP functions on a crafted packet (chapter 8).

    b = BPF(text=...)                      # one compile can carry many functions
    fd, log = load_with_log(b, "count", BPF.KPROBE)
    emit("count", {"accepted": fd is not None, "log": log})

bcc writes the log to file descriptor 2 from C (libbcc), so it is caught there, not in sys.stderr.
"""
import ctypes
import os
import struct
import tempfile

from labtools import BPF_PROG_TEST_RUN, _syscall

DEBUG_BPF = 0x2  # bcc's flag for log level 1: a log even for programs the verifier accepts
DEBUG_BPF_REGISTER_STATE = 0x10  # log level 2: the states after every instruction, on success too


def load_with_log(b, name, prog_type, every_insn=False):
    """(the loaded function's fd, or None if the kernel refused it; everything bcc printed while loading).

    A rejection's log shows every instruction up to the one refused; for an accepted function, level 1
    prints little more than the summary, so `every_insn` asks for level 2 (long for loops)."""
    flag = DEBUG_BPF_REGISTER_STATE if every_insn else DEBUG_BPF
    saved_debug, b.debug = b.debug, b.debug | flag
    with tempfile.TemporaryFile(mode="w+b") as capture:
        saved_fd2 = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            fd = b.load_func(name, prog_type).fd
        except Exception:  # bcc raises a bare Exception; the reason is in the captured log
            fd = None
        finally:
            os.dup2(saved_fd2, 2)
            os.close(saved_fd2)
            b.debug = saved_debug
        capture.seek(0)
        return fd, capture.read().decode(errors="replace")


def ipv4_frame(protocol, ethertype=0x0800, payload=b"\0" * 8):
    """An Ethernet frame holding an IPv4 packet of `protocol` (1 ICMP, 17 UDP) from 10.0.0.1 to 10.0.0.2
    (with another `ethertype`, a frame that only looks like one to a program that doesn't check)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + ip + payload


def xdp_test_run(prog_fd, frame):
    """Run an XDP program once on `frame` with BPF_PROG_TEST_RUN; its return value (XDP_DROP 1, XDP_PASS 2...)."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 256)
    # union bpf_attr, the 'test' member: prog_fd, retval, data_size_in, data_size_out, data_in, data_out.
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<IIIIQQI", attr, 0, prog_fd, 0, len(frame), len(data_out),
                     ctypes.addressof(data_in), ctypes.addressof(data_out), 1)
    _syscall("bpf", BPF_PROG_TEST_RUN, attr, ctypes.sizeof(attr))
    return struct.unpack_from("<I", attr, 4)[0]
