"""The commands LibbpfBuild sends to the VM, checked with a fake lab that records them."""
from __future__ import annotations

import subprocess

import pytest

from ebpf_lab.errors import BpftoolError
from ebpf_lab.inspect.libbpf_build import LibbpfBuild


class FakeLab:
    """Answers `uname -r; uname -m` like the lab VM, fails the commands named in `fail`, records the rest."""

    def __init__(self, fail: str = "") -> None:
        self.commands: list[str] = []
        self.fail = fail
        self.ssh = self

    def sh(self, command: str, check: bool = True, timeout: float | None = 120) -> str:
        self.commands.append(command)
        return "6.1.0-56-cloud-amd64\nx86_64\n" if command.startswith("uname") else ""

    def run(self, command: str, check: bool = True, timeout: float | None = 120, input=None):
        self.commands.append(command)
        failed = bool(self.fail) and self.fail in command
        return subprocess.CompletedProcess(command, 1 if failed else 0, b"",
                                           b"x.bpf.c:3:5: error: use of undeclared identifier 'y'" if failed else b"")

    def copy_in(self, data: bytes, path: str) -> None:
        self.commands.append(f"copy_in {path}")


def test_bpf_objects_are_built_against_the_cached_vmlinux_h_precompiled():
    lab = FakeLab()
    assert LibbpfBuild(lab, "/tmp/ch09").compile_bpf("int x;", "hello") == "/tmp/ch09/hello.bpf.o"
    [clang] = [c for c in lab.commands if "-c hello.bpf.c" in c]
    assert "-target bpf -g -O2 -D__TARGET_ARCH_x86 -I/tmp/ebpf-lab-btf/6.1.0-56-cloud-amd64" in clang
    assert "-include-pch /tmp/ebpf-lab-btf/6.1.0-56-cloud-amd64/vmlinux.h.x86.pch" in clang
    assert any("bpftool btf dump file /sys/kernel/btf/vmlinux format c" in c for c in lab.commands)


def test_the_shown_command_is_the_plain_one():
    command = LibbpfBuild(FakeLab(), "/tmp/ch09").bpf_command("hello")
    assert command.startswith("clang -target bpf") and "pch" not in command


def test_a_compile_error_carries_what_clang_said():
    with pytest.raises(BpftoolError, match="undeclared identifier 'y'"):
        LibbpfBuild(FakeLab(fail="-c x.bpf.c"), "/tmp/ch09").compile_bpf("int x = y;", "x")


@pytest.mark.parametrize("workdir", ["/tmp", "/tmp/", "/root/ch09", "/"])
def test_the_work_directory_is_one_of_its_own_under_tmp(workdir):
    with pytest.raises(BpftoolError, match="under /tmp"):
        LibbpfBuild(FakeLab(), workdir)
