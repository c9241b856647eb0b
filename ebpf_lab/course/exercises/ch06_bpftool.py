"""Chapter 6's exercise: an XDP program, built with clang and loaded with bpftool, that passes every packet
and counts them in a global variable `packets`: the check reads the variable's map (.bss or .data) after
sending UDP packets on lo, and a listener says which arrived."""
from __future__ import annotations

from ...errors import BpftoolError
from ...lab import Lab
from ..verdict import Verdict, unfinished

NAME = "xdp"


def xdp_globals(lab: Lab, c_text: str, packets: int = 5) -> tuple[dict, tuple[int, int]]:
    """Build C with clang, load and pin it, attach it to lo, send UDP packets to a listener;
    return its global variables and (sent, received). Everything is detached and unpinned again."""
    from ...inspect.bpftool import Bpftool

    tool = Bpftool(lab)
    obj = tool.compile(c_text, "exercise_xdp")
    with tool.pinned(obj, "/sys/fs/bpf/exercise_xdp") as prog, tool.xdp_attached(prog["id"], "lo"):
        sent, received = map(int, lab.guest_tool("send-receive-udp", packets).split())
        values: dict = {}
        for m in tool("map", "list"):
            if m["id"] in prog.get("map_ids", []):
                for entry in tool("map", "dump", "id", m["id"]):
                    for section in entry.get("formatted", {}).get("value", {}).values():
                        for var in section:
                            values.update(var)
        return values, (sent, received)


def check(lab: Lab, c_text: str) -> Verdict:
    if (todo := unfinished(c_text)) is not None:
        return todo
    try:
        values, (sent, received) = xdp_globals(lab, c_text, packets=5)
    except BpftoolError as e:
        return Verdict(False, f"{e}")
    return judge(values, sent, received)


def judge(values: dict, sent: int, received: int) -> Verdict:
    """`values`: the program's global variables after `sent` packets, of which `received` arrived."""
    if "packets" not in values:
        return Verdict(False, f"no global variable named packets (found {sorted(values) or 'none'}): declare "
                              "`int packets = 0;` outside the function and add 1 to it for every packet (the "
                              "compiler drops a global that nothing uses)")
    if received != sent:
        return Verdict(False, f"only {received} of {sent} packets arrived: return XDP_PASS for every packet")
    if values["packets"] != sent:
        return Verdict(False, f"packets = {values['packets']} after {sent} UDP packets on lo: add 1 for every "
                              "packet (atomically: __sync_fetch_and_add(&packets, 1))")
    return Verdict(True, f"packets = {values['packets']}: exactly the {sent} UDP packets sent on lo, "
                         f"and all {received} arrived")
