"""A small network bench in the lab VM for XDP and TC programs: a veth pair into a network
namespace, real traffic through it, tc attachments, programs run on crafted packets, and everything
removed again when a `with` block ends, however it ends. Loading, pinning and XDP attachment are
`Bpftool`'s."""
from __future__ import annotations

import json
import shlex
from contextlib import contextmanager
from typing import Iterator

from ..errors import BpftoolError
from ..runner.guest import nettools
from ..runner.guest.nettools import PROTOCOL_NAMES, XDP_ACTIONS
from .bpftool import Bpftool

__all__ = ["PROTOCOL_NAMES", "XDP_ACTIONS", "Veth", "array_counts", "protocol_label", "tc_attached", "test_run",
           "veth_pair"]


def protocol_label(number: int) -> str:
    """'UDP (17)': an IP protocol number as people say it, for charts and tables."""
    return f"{PROTOCOL_NAMES.get(number, 'protocol')} ({number})"


def test_run(lab, pin: str, frames: list[bytes]) -> list[int]:
    """Run the program pinned at `pin` once on each frame (`bpftool prog run`, which calls
    bpf(BPF_PROG_TEST_RUN)); its return values, in order."""
    # One shell for all frames; printf's octal escapes carry the bytes (the VM's sh is dash: no \x).
    script = ['d=$(mktemp -d)', 'trap \'rm -rf "$d"\' EXIT']
    for i, frame in enumerate(frames):
        octal = "".join(f"\\{b:03o}" for b in frame)
        # bpftool exits 255 on errors, which ssh reserves for "unreachable".
        script += [f"printf '{octal}' > \"$d/{i}\"",
                   f"bpftool -j prog run pinned {shlex.quote(pin)} data_in \"$d/{i}\" repeat 1 || exit 1", "echo"]
    proc = lab.ssh.run("\n".join(script), check=False)
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise BpftoolError(f"bpftool prog run failed: {(proc.stderr.decode(errors='replace') or out).strip()[-300:]}")
    return [json.loads(line)["retval"] for line in out.splitlines() if line.strip()]


def array_counts(lab, map_id: int) -> dict[int, int]:
    """The non-zero entries of an array map of counters, key -> value (bpftool reads them with BTF)."""
    entries = Bpftool(lab)("map", "dump", "id", map_id)
    return {e["formatted"]["key"]: e["formatted"]["value"] for e in entries if e["formatted"]["value"]}


class Veth:
    """The host's end of a veth pair (`host`, `host_ip`) and its peer (`peer`, `peer_ip`) in the
    network namespace `netns`; `exchange` sends traffic from the namespace to the host."""

    def __init__(self, lab, name: str = "ch12", subnet: int = 0) -> None:
        self.lab = lab
        self._pair = nettools.VethPair(name, subnet)
        self.netns, self.host, self.peer = self._pair.netns, self._pair.host, self._pair.peer
        self.host_ip, self.peer_ip = self._pair.host_ip, self._pair.peer_ip
        self.subnet = subnet

    def __repr__(self) -> str:
        return repr(self._pair)

    def exchange(self, udp: dict[int, int], pings: int = 0, tcp_port: int = 7777,
                 udp_with_options: dict[int, int] | None = None) -> dict:
        """From the namespace: `udp` ({port: datagrams}) and `udp_with_options` (the same, sent with IPv4
        options: a 24-byte IP header), `pings` echo requests, one TCP connection to `tcp_port`, to
        listeners on the host end. What was sent, and which datagrams arrived:
        {"sent": {"udp_sent", "pings", "echo_replies", "tcp_connected"}, "received": {port: count}}."""
        out = self.lab.guest_tool("exchange", self.netns, self.subnet, json.dumps(udp), pings, tcp_port,
                                  json.dumps(udp_with_options or {}), module="nettools")
        result = json.loads(out)
        result["sent"]["udp_sent"] = {int(p): n for p, n in result["sent"]["udp_sent"].items()}
        result["received"] = {int(p): n for p, n in result["received"].items()}
        return result


@contextmanager
def veth_pair(lab, name: str = "ch12", subnet: int = 0) -> Iterator[Veth]:
    """A veth pair between the VM and a new network namespace `name`, 10.11.`subnet`.1 <-> .2, for
    the block; deleting it also removes every XDP program and qdisc attached to it."""
    veth = Veth(lab, name, subnet)
    # Plain shell (one ssh call each way): starting Python in the lab VM costs seconds.
    lab.sh("set -e\n" + "\n".join(veth._pair.commands()))
    try:
        yield veth
    finally:
        lab.sh("\n".join(veth._pair.down_commands()), check=False)


@contextmanager
def tc_attached(lab, obj: str, dev: str, direction: str = "egress", section: str = "tc") -> Iterator[dict]:
    """The object's program in section `section` as a direct-action tc filter on `dev`'s `direction`
    (a clsact qdisc is added for it, and deleted after the block); yields bpftool's view of it."""
    if direction not in ("ingress", "egress"):
        raise BpftoolError(f"unknown direction {direction!r}", "use ingress or egress")
    q = shlex.quote(dev)
    lab.sh(f"tc qdisc add dev {q} clsact")
    try:
        lab.sh(f"tc filter add dev {q} {direction} bpf direct-action obj {shlex.quote(obj)} sec {shlex.quote(section)}")
        [attached] = [t for t in Bpftool(lab)("net", "list", "dev", dev)[0]["tc"] if t["kind"] == f"clsact/{direction}"]
        yield Bpftool(lab)("prog", "show", "id", attached["id"])
    finally:
        lab.sh(f"tc qdisc del dev {q} clsact", check=False)
