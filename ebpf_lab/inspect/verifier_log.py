"""Read the verifier's log: the reason it gave, the lines around it, and a copy without the numbers
that change from load to load. Pure functions over the log's text."""
from __future__ import annotations

import re

from ..runner.diagnostics import VERIFIER_FOOTER

INSN = re.compile(r"^\d+: \(")                 # "10: (79) r1 = *(u64 *)(r0 +0)"
SUMMARY = re.compile(r"^processed (\d+) insns")  # the log's last line
KERNEL_ADDRESS = re.compile(r"(r\d+ = )0x[0-9a-f]{16}\b")  # "r1 = 0xff44ff5cac6fcc00": a map's address


def log_lines(log: str) -> list[str]:
    """The verifier's own lines: without bcc's "bpf: Failed to load program" header and HINT lines."""
    return [line for line in log.splitlines()
            if line.strip() and not line.startswith(("bpf: Failed to load program", "HINT:"))]


def reason(log: str) -> str:
    """Why the verifier refused: its first line after the last instruction it looked at."""
    lines = log_lines(log)
    last_insn = max((i for i, line in enumerate(lines) if INSN.match(line)), default=-1)
    for line in lines[last_insn + 1:]:
        if not SUMMARY.match(line) and not line.startswith(";"):
            return line
    return lines[-1] if lines else "(no log)"


def processed_insns(log: str) -> int | None:
    """How many instructions the verifier walked (the log's last line), or None without that line."""
    found = [int(m.group(1)) for line in log.splitlines() if (m := SUMMARY.match(line))]
    return found[-1] if found else None


def sanitized(log: str) -> str:
    """The log with the map addresses it contains (kernel pointers, new at every load) blanked out."""
    return KERNEL_ADDRESS.sub(r"\g<1>0xADDRESS", log)


def tail(log: str, lines: int = 4) -> str:
    """The instructions and the reason at the end of a rejection, the part to read first."""
    kept = [line for line in log_lines(log) if not SUMMARY.match(line)]
    return sanitized("\n".join(kept[-lines:]))


def libbpf_reason(libbpf_output: str) -> str:
    """Why the verifier refused a program loaded through libbpf (bpftool prog load), from what libbpf
    printed: the log's last words, and the C line it stopped at (from -g's line info)."""
    log = libbpf_output.split("-- BEGIN PROG LOAD LOG --", 1)[-1].split("-- END PROG LOAD LOG --", 1)[0]
    lines = [line for line in log.splitlines() if line.strip() and not VERIFIER_FOOTER.match(line)]
    if not lines:
        return libbpf_output.strip().splitlines()[-1] if libbpf_output.strip() else "no reason given"
    source = next((re.sub(r"\s*//.*", "", line[1:]).strip() for line in reversed(lines) if line.startswith(";")), None)
    tail: list[str] = []
    for line in reversed(lines):
        # The reason is the text after the last instruction ("12: (71) r2 = ...") or source line.
        if INSN.match(line) or line.startswith(";"):
            break
        tail.insert(0, line.strip())
    reason = "; ".join(tail) or lines[-1].strip()
    return f"{reason} (at: {source})" if source else reason
