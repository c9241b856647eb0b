"""Chapter 12's exercise: an XDP program that drops UDP to port 7777 and passes the rest.

The answer is built with clang and loaded with bpftool (so the verifier judges it), run with
BPF_PROG_TEST_RUN on crafted packets whose right fate is known, then attached to a veth pair
while real datagrams cross it: the listener on the far side says which ones arrived. Some packets carry
IPv4 options (a 24-byte IP header): a program that looks for the UDP header at ip + 1 instead of
ihl * 4 bytes in reads the options as ports.
"""
from __future__ import annotations

from ...errors import BpftoolError
from ...inspect.bpftool import Bpftool
from ...inspect.netlab import XDP_ACTIONS, test_run, veth_pair
from ...lab import Lab
from ...runner.guest.nettools import NOP_OPTIONS, icmp_packet, tcp_packet, truncated_udp_packet, udp_packet
from ..verdict import Verdict, unfinished

NAME = "xdp_drop"

PORT, OTHER_PORT, OPTIONS_PORT = 7777, 7778, 7779
PIN = "/sys/fs/bpf/ch12_exercise"
XDP_DROP, XDP_PASS = 1, 2
# Each crafted packet, and what the answer must do with it.
CASES = [("UDP to 7777", udp_packet(PORT), XDP_DROP),
         ("UDP to 7777 with IP options", udp_packet(PORT, ip_options=NOP_OPTIONS), XDP_DROP),
         (f"UDP to {OTHER_PORT}", udp_packet(OTHER_PORT), XDP_PASS),
         (f"UDP to {OTHER_PORT} with IP options", udp_packet(OTHER_PORT, ip_options=NOP_OPTIONS), XDP_PASS),
         ("TCP to 7777", tcp_packet(PORT), XDP_PASS),
         ("ICMP echo", icmp_packet(), XDP_PASS),
         ("a truncated UDP packet", truncated_udp_packet(PORT), XDP_PASS)]


def _action(code: int) -> str:
    return XDP_ACTIONS.get(code, str(code))


def _judge_test_runs(returned: list[int]) -> Verdict | None:
    """A verdict with a hint when a crafted packet met the wrong fate, else None."""
    got = {name: code for (name, _, _), code in zip(CASES, returned)}
    if all(code == XDP_DROP for code in returned):
        return Verdict(False, "your program dropped every packet, TCP, ICMP and other ports too: return "
                              "XDP_DROP only for UDP to port 7777, XDP_PASS for everything else")
    if got["UDP to 7777"] != XDP_DROP:
        return Verdict(False, f"UDP to 7777 got {_action(got['UDP to 7777'])}, not XDP_DROP: check the IP header's "
                              "protocol (IPPROTO_UDP) and compare udp->dest with bpf_htons(7777): ports are "
                              "big-endian on the wire")
    if got["UDP to 7777 with IP options"] != XDP_DROP:
        return Verdict(False, f"UDP to 7777 in a packet with IPv4 options (a 24-byte IP header) got "
                              f"{_action(got['UDP to 7777 with IP options'])}: the UDP header starts ihl * 4 bytes "
                              "after the IP header's start, not at ip + 1 (20 bytes)")
    if got["TCP to 7777"] == XDP_DROP:
        return Verdict(False, "TCP to 7777 was dropped too: only UDP must be, so check ip->protocol == IPPROTO_UDP "
                              "before you look at the port")
    if got[f"UDP to {OTHER_PORT}"] == XDP_DROP:
        return Verdict(False, f"UDP to {OTHER_PORT} was dropped: drop port 7777 only")
    if got["a truncated UDP packet"] != XDP_PASS:
        return Verdict(False, f"a UDP packet cut short inside its header got {_action(got['a truncated UDP packet'])}: "
                              "when a header does not fit before data_end, return XDP_PASS")
    wrong = [f"{name} got {_action(got[name])}" for name, _, want in CASES if got[name] != want]
    if wrong:
        return Verdict(False, f"{', '.join(wrong)}: return XDP_PASS for everything that is not UDP to port 7777")
    return None


def check(lab: Lab, c_text: str) -> Verdict:
    if (todo := unfinished(c_text)) is not None:
        return todo
    tool = Bpftool(lab)
    try:
        obj = tool.compile(c_text, "ch12_exercise")
        with tool.pinned(obj, PIN) as prog:
            if prog["type"] != "xdp":
                return Verdict(False, f"your program is of type {prog['type']}: put it in SEC(\"xdp\")")
            returned = test_run(lab, PIN, [frame for _, frame, _ in CASES])
            if (verdict := _judge_test_runs(returned)) is not None:
                return verdict
            with veth_pair(lab, "ch12x", subnet=1) as veth, tool.xdp_attached(prog["id"], veth.host, "xdpdrv"):
                result = veth.exchange({PORT: 5, OTHER_PORT: 5}, tcp_port=PORT, udp_with_options={PORT: 5, OPTIONS_PORT: 5})
    except BpftoolError as e:
        hint = (": check each header against data_end before you read it, e.g. "
                "if ((void *)(eth + 1) > data_end) return XDP_PASS;" if "packet" in e.message else "")
        return Verdict(False, f"{e.message}{hint}")
    return judge_exchange(result)


def judge_exchange(result: dict) -> Verdict:
    """What crossed the veth pair with the answer on it: 5 datagrams to 7777 with and 5 without IPv4 options,
    5 to 7778, 5 with options to 7779, and a TCP connection to 7777."""
    received = result["received"]
    if received[PORT]:
        return Verdict(False, f"{received[PORT]} of 10 datagrams to 7777 (5 of them with IPv4 options) reached the "
                              "listener on the veth pair: your program must drop them on a real device too; "
                              "find the UDP header ihl * 4 bytes after the IP header's start")
    if received[OTHER_PORT] != 5:
        return Verdict(False, f"only {received[OTHER_PORT]} of 5 datagrams to {OTHER_PORT} arrived: pass them")
    if received[OPTIONS_PORT] != 5:
        return Verdict(False, f"only {received[OPTIONS_PORT]} of 5 datagrams to {OPTIONS_PORT} with IPv4 options "
                              "arrived: pass them")
    if not result["sent"]["tcp_connected"]:
        return Verdict(False, "a TCP connection to port 7777 failed across the veth pair: pass TCP")
    return Verdict(True, "BPF_PROG_TEST_RUN: UDP to 7777, with and without IPv4 options → XDP_DROP; UDP to 7778 "
                         "(with options too), TCP to 7777, ICMP and a truncated packet → XDP_PASS. On a veth pair: "
                         "0 of 10 datagrams to 7777 arrived (5 with IPv4 options), 5 of 5 to 7778, 5 of 5 with "
                         "options to 7779, and a TCP connection to 7777 went through")
