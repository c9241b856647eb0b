"""Build libbpf programs in the lab VM the CO-RE way: vmlinux.h from the kernel's BTF, clang once,
a bpftool skeleton, a user-space loader linked with libbpf, all in one work directory."""
from __future__ import annotations

import shlex

from ..errors import BpftoolError
from .btf_ext import CoreRelo, core_relocations

# Generated once per kernel and reused: bpftool takes seconds, and every build of every chapter needs it.
VMLINUX_CACHE = "/tmp/ebpf-lab-btf"
# bpf_tracing.h picks the register layout of PT_REGS_* by target architecture.
TARGET_ARCH = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390", "ppc64le": "powerpc", "riscv64": "riscv"}


class LibbpfBuild:
    """`LibbpfBuild(lab, "/tmp/ch09")`: sources, objects and binaries live in that VM directory
    until `clean()`."""

    def __init__(self, lab, workdir: str) -> None:
        if not workdir.startswith("/tmp/") or workdir.rstrip("/") == "/tmp":
            raise BpftoolError(f"{workdir} is not a directory under /tmp", "build in a directory of your own, "
                                                                           "e.g. /tmp/ch09")
        self.lab = lab
        self.workdir = workdir.rstrip("/")
        self._vmlinux_dir: str | None = None
        self._arch: str | None = None

    def path(self, name: str) -> str:
        return f"{self.workdir}/{name}"

    def write(self, name: str, text: str) -> str:
        """Write a file into the work directory; its path in the VM."""
        self.lab.sh(f"mkdir -p {shlex.quote(self.workdir)}")
        self.lab.ssh.copy_in(text.encode(), self.path(name))
        return self.path(name)

    def read(self, name: str) -> bytes:
        return self.lab.ssh.run(f"cat {shlex.quote(self.path(name))}").stdout

    def vmlinux_h(self) -> str:
        """The path of vmlinux.h for the running kernel: `bpftool btf dump file /sys/kernel/btf/vmlinux
        format c`, made once per kernel release and kept under /tmp."""
        if self._vmlinux_dir is None:
            release, machine = self.lab.sh("uname -r; uname -m").split()
            d = shlex.quote(f"{VMLINUX_CACHE}/{release}")
            # Written under a temporary name and renamed: a build running at the same time sees all or nothing.
            self.lab.sh(f"mkdir -p {d} && test -s {d}/vmlinux.h || {{ bpftool btf dump file /sys/kernel/btf/vmlinux "
                        f"format c > {d}/vmlinux.h.$$ && mv {d}/vmlinux.h.$$ {d}/vmlinux.h; }}")
            self._vmlinux_dir, self._arch = f"{VMLINUX_CACHE}/{release}", TARGET_ARCH.get(machine, machine)
        return f"{self._vmlinux_dir}/vmlinux.h"

    def bpf_command(self, name: str) -> str:
        """The clang command that builds NAME.bpf.c into NAME.bpf.o (against vmlinux.h)."""
        self.vmlinux_h()
        return f"clang {self._bpf_flags()} -I{self._vmlinux_dir} -c {name}.bpf.c -o {name}.bpf.o"

    def compile_bpf(self, source: str, name: str) -> str:
        """Compile BPF C (which may #include "vmlinux.h") to NAME.bpf.o; its path in the VM.

        clang is given vmlinux.h precompiled: parsing its 100,000 lines is most of a build, and under
        software emulation that is half a minute. The object is the same byte for byte."""
        self.write(f"{name}.bpf.c", source)
        self._sh(self.bpf_command(name).replace(" -c ", f" -include-pch {self._pch()} -c ", 1),
                 f"clang could not compile {name}.bpf.c")
        return self.path(f"{name}.bpf.o")

    def _bpf_flags(self) -> str:
        return f"-target bpf -g -O2 -D__TARGET_ARCH_{self._arch}"

    def _pch(self) -> str:
        """vmlinux.h precompiled with the flags of bpf_command (a PCH is only valid with the same ones)."""
        header = self.vmlinux_h()
        pch = f"{header}.{self._arch}.pch"
        q, tmp = shlex.quote(pch), shlex.quote(pch + ".$$")
        self._sh(f"test -s {q} || {{ clang {self._bpf_flags()} -x c-header {shlex.quote(header)} -o {tmp} && "
                 f"mv {tmp} {q}; }}", "clang could not precompile vmlinux.h")
        return pch

    def skeleton(self, name: str) -> str:
        """`bpftool gen object` (link: keeps BTF, drops DWARF) then `gen skeleton`: NAME.skel.h's path."""
        self._sh(f"bpftool gen object {name}.o {name}.bpf.o && bpftool gen skeleton {name}.o name {name} > "
                 f"{name}.skel.h", f"bpftool could not make a skeleton of {name}.bpf.o")
        return self.path(f"{name}.skel.h")

    def compile_user(self, source: str, name: str) -> str:
        """Compile a user-space loader (C, next to its skeleton) linked with libbpf; the binary's path."""
        self.write(f"{name}.c", source)
        self._sh(f"cc -O2 -Wall -o {name} {name}.c -lbpf", f"cc could not compile {name}.c")
        return self.path(name)

    def relocations(self, obj_name: str) -> list[CoreRelo]:
        """The CO-RE relocations clang recorded in an object of the work directory."""
        return core_relocations(self.read(obj_name))

    def sh(self, command: str, timeout: float = 600) -> str:
        """A shell command run as root in the work directory; its stdout."""
        d = shlex.quote(self.workdir)
        # Braces: a command ending in `&` must not take the `cd` into the background with it.
        return self.lab.sh(f"mkdir -p {d} && cd {d} && {{\n{command}\n}}", timeout=timeout)

    def clean(self) -> None:
        """Remove the work directory (vmlinux.h stays cached for the next build)."""
        self.lab.sh(f"rm -rf {shlex.quote(self.workdir)}")

    def _sh(self, command: str, what: str) -> str:
        """Run a build step; if it fails, raise with everything the tool said (compilers write to stderr)."""
        proc = self.lab.ssh.run(f"cd {shlex.quote(self.workdir)} && {command}", check=False, timeout=600)
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            raise BpftoolError(f"{what}:\n{said}")
        return proc.stdout.decode(errors="replace")
