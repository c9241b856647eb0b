"""bpftool from Python: its JSON output parsed, its errors explained, and what it creates cleaned up."""
from __future__ import annotations

import json
import re
import shlex
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import BpftoolError, SshFailed
from .verifier_log import libbpf_reason

OBJ_DIR = "/root/ebpf-lab/obj"
# Debian's libc headers keep asm/ under the multiarch directory, which clang -target bpf does not search.
CLANG_BPF = "clang -target bpf -g -O2 -I/usr/include/x86_64-linux-gnu"


class Bpftool:
    """`Bpftool(lab)("prog", "show", "id", 5)` runs `bpftool -j prog show id 5` in the VM and parses it."""

    def __init__(self, lab) -> None:
        self.lab = lab

    def __call__(self, *args: Any) -> Any:
        # bpftool exits 255 on errors, which ssh reserves for "unreachable": its JSON says what went wrong.
        cmd = "bpftool -j " + " ".join(shlex.quote(str(a)) for a in args) + " || exit 1"
        proc = self.lab.ssh.run(cmd, check=False)
        out = proc.stdout.decode(errors="replace").strip()
        try:
            data = json.loads(out) if out else None
        except ValueError:
            data = None
        if proc.returncode != 0 or (isinstance(data, dict) and "error" in data):
            message = data["error"] if isinstance(data, dict) else (proc.stderr.decode().strip() or out)
            raise _explain(args, message)
        return data

    def text(self, *args: Any) -> str:
        """Plain (non-JSON) output, e.g. `prog dump xlated` as people read it."""
        return self.lab.sh("bpftool " + " ".join(shlex.quote(str(a)) for a in args))

    def compile(self, c_source: str, name: str) -> str:
        """Compile C to a BPF object in the VM with clang; returns its path there."""
        src, obj = f"{OBJ_DIR}/{name}.bpf.c", f"{OBJ_DIR}/{name}.bpf.o"
        self.lab.ssh.copy_in(c_source.encode(), src)
        try:
            self.lab.sh(f"{CLANG_BPF} -c {src} -o {obj}")
        except SshFailed as e:
            raise BpftoolError(f"clang could not compile {name}.bpf.c: {e.message}") from None
        return obj

    def load(self, obj: str, pin: str) -> dict:
        """`bpftool prog load OBJ PIN`: the program stays loaded while the pin exists. A program the
        verifier refuses raises a BpftoolError that says why, and at which C line."""
        proc = self.lab.ssh.run(f"bpftool prog load {shlex.quote(obj)} {shlex.quote(pin)} || exit 1", check=False)
        if proc.returncode != 0:
            output = proc.stderr.decode(errors="replace")
            if "BEGIN PROG LOAD LOG" in output:
                raise BpftoolError(f"the kernel's verifier rejected the program: {libbpf_reason(output)}")
            raise BpftoolError(f"bpftool could not load {obj}: {output.strip()[-400:]}")
        return self("prog", "show", "pinned", pin)

    def unpin(self, pin: str) -> None:
        """Remove a pinned file; the kernel unloads the program once nothing else holds it."""
        if not pin.startswith("/sys/fs/bpf/"):
            raise BpftoolError(f"{pin} is not under /sys/fs/bpf", "pins live in the BPF filesystem, /sys/fs/bpf/...")
        self.lab.sh(f"rm -f {shlex.quote(pin)}")

    @contextmanager
    def pinned(self, obj: str, pin: str) -> Iterator[dict]:
        prog = self.load(obj, pin)
        try:
            yield prog
        finally:
            self.unpin(pin)

    @contextmanager
    def dummy_device(self, name: str = "lab0") -> Iterator[str]:
        """A network device that exists only for the block: somewhere safe to attach XDP."""
        self.lab.sh(f"ip link add {shlex.quote(name)} type dummy && ip link set {shlex.quote(name)} up")
        try:
            yield name
        finally:
            self.lab.sh(f"ip link del {shlex.quote(name)}", check=False)

    @contextmanager
    def xdp_attached(self, prog_id: int, dev: str, mode: str = "xdp") -> Iterator[None]:
        """The program as `dev`'s XDP program for the block. `mode`: xdp (native if the driver supports
        XDP, else generic), xdpdrv (native, in the driver: fails where the driver has no XDP support),
        or xdpgeneric (after the stack built an skb)."""
        if mode not in ("xdp", "xdpdrv", "xdpgeneric"):
            raise BpftoolError(f"unknown XDP mode {mode!r}", "use xdp, xdpdrv or xdpgeneric")
        self.lab.sh(f"bpftool net attach {mode} id {int(prog_id)} dev {shlex.quote(dev)}")
        try:
            yield
        finally:
            self.lab.sh(f"bpftool net detach {mode} dev {shlex.quote(dev)}", check=False)


def _explain(args: tuple, message: str) -> BpftoolError:
    words = [str(a) for a in args]
    if re.search(r"get by id \((\d+)\)|can't get prog by id", message):
        kind = "map" if words and words[0] == "map" else "program"
        return BpftoolError(f"no BPF {kind} with that id: {message}",
                            f"list them with: lab.bpftool('{'map' if kind == 'map' else 'prog'}', 'list')")
    if "bpf obj get" in message or "No such file or directory" in message and "pinned" in words:
        return BpftoolError(f"nothing is pinned there: {message}", "list pins with: lab.sh('ls -R /sys/fs/bpf')")
    return BpftoolError(f"bpftool {' '.join(words)}: {message}")
