"""Chapter 0's check: is the lab VM what the course needs (kernel, bcc, bpftool, clang)?"""
from __future__ import annotations

import re

from ..lab import Lab
from .verdict import Verdict


def check_setup(lab: Lab) -> Verdict:
    info = lab.info()
    problems = [name for name, ok in (
        ("a 5.8+ kernel (ring buffers)", tuple(map(int, re.findall(r"\d+", info["kernel"])[:2])) >= (5, 8)),
        ("bcc", info["bcc"] != "?"), ("bpftool", info["bpftool"].startswith("bpftool")),
        ("clang", "clang" in info["clang"])) if not ok]
    if problems:
        return Verdict(False, "the lab VM lacks " + ", ".join(problems) + "; rebuild it: ebpf-lab vm build --force")
    return Verdict(True, f"{info['target']} VM, kernel {info['kernel']}, bcc {info['bcc']}")
