"""Chapter 12's self-check: another style passes; wrong answers (a UDP header taken at
ip + 1 among them) fail with a hint, and nothing (pin, XDP attachment, namespace, veth) is left behind."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, solution

from .verdicts import fails, passes

# Bytes and offsets, the IP header's length from its first byte, and a switch: no struct pointers.
OFFSETS_STYLE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int drop_7777(struct xdp_md *ctx) {
    unsigned char *p = (void *)(long)ctx->data;
    unsigned char *end = (void *)(long)ctx->data_end;
    if (p + 14 + 20 > end)
        return XDP_PASS;
    if (p[12] != 0x08 || p[13] != 0x00)   /* ethertype IPv4 */
        return XDP_PASS;
    unsigned char *udp = p + 14 + (p[14] & 0x0f) * 4;  /* the low nibble of byte 0: header length in words */
    if (udp + 4 > end)
        return XDP_PASS;
    switch (p[14 + 9]) {                  /* IP protocol */
    case 17:
        if (udp[2] == 7777 >> 8 && udp[3] == (7777 & 0xff))
            return XDP_DROP;
        return XDP_PASS;
    default:
        return XDP_PASS;
    }
}

char LICENSE[] SEC("license") = "GPL";
"""

NO_BOUNDS_CHECK = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx) {
    struct ethhdr *eth = (void *)(long)ctx->data;
    struct iphdr *ip = (void *)(eth + 1);
    struct udphdr *udp = (void *)(ip + 1);
    if (eth->h_proto == bpf_htons(ETH_P_IP) && ip->protocol == IPPROTO_UDP && udp->dest == bpf_htons(7777))
        return XDP_DROP;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""


def nothing_left(lab):
    assert all(not d["xdp"] and not d["tc"] for d in lab.bpftool("net", "list"))
    assert "ch12" not in lab.sh("ip netns list; ip -o link")
    assert "ch12" not in lab.sh("ls /sys/fs/bpf")


def test_xdp_drop_is_registered():
    assert "XDP_DROP" in solution("xdp_drop")


def test_right_answers_pass(lab, clean_kernel):
    passes(CHECKS["xdp_drop"](lab, OFFSETS_STYLE))
    nothing_left(lab)


def test_wrong_answers_fail_with_a_hint(lab, clean_kernel):
    right = solution("xdp_drop")
    fails(CHECKS["xdp_drop"](lab, right.replace("return XDP_PASS;", "return XDP_DROP;")),
          "dropped every packet")
    fails(CHECKS["xdp_drop"](lab, right.replace(" || ip->protocol != IPPROTO_UDP", "")),
          "TCP to 7777 was dropped too")
    fails(CHECKS["xdp_drop"](lab, right.replace("bpf_htons(7777)", "7777")), "bpf_htons(7777)")
    at_ip_plus_one = right.replace("(void *)ip + ip->ihl * 4", "(void *)(ip + 1)")
    assert at_ip_plus_one != right
    fails(CHECKS["xdp_drop"](lab, at_ip_plus_one), "not at ip + 1")
    verdict = fails(CHECKS["xdp_drop"](lab, NO_BOUNDS_CHECK), "verifier rejected")
    assert "outside of the packet" in verdict.message and "data_end" in verdict.message
    fails(CHECKS["xdp_drop"](lab, "#include <linux/bpf.h>\nTODO\n"), "replace the TODO")
    nothing_left(lab)
