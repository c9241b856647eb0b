"""Answers that hook the openat system call (chapters 1 to 3): which of their programs are on it."""
from __future__ import annotations

from .observe import KernelView
from .verdict import Verdict

ALICE, BOB = 1001, 1002


def on_openat(kernel: KernelView, *types: str) -> tuple[list[dict], Verdict | None]:
    """The answer's programs of `types` attached to openat (its kprobe or its syscall tracepoint), or a
    verdict saying where they are instead."""
    hooked = [(p, where) for p, where in kernel.attached() if p["type"] in types]
    on_it = [p for p, where in hooked if "openat" in where and "openat2" not in where]
    if on_it:
        return on_it, None
    if hooked:
        places = ", ".join(sorted({where for _, where in hooked}))
        hint = " (program starts, not file opens)" if "execve" in places else ""
        return [], Verdict(False, f"your program is attached to {places}{hint}: attach it to openat, e.g. "
                                  "b.attach_kprobe(event=b.get_syscall_fnname(\"openat\"), fn_name=...)")
    loaded = ", ".join(f"{p.get('name', '?')} ({p['type']})" for p in kernel.progs)
    return [], Verdict(False, f"your program {loaded} was loaded but attached nowhere: attach it with "
                              "b.attach_kprobe(...) or use TRACEPOINT_PROBE")
