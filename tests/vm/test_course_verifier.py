"""Chapter 8's self-check: fixes in another style pass; the template is refused
with the verifier's three reasons; answers that are still rejected show the reason, and answers the
verifier accepts but that no longer do their job say which behaviour is wrong."""
from __future__ import annotations

from ebpf_lab.course import CHECKS, solution

from .verdicts import fails_saying_all, passes

# The template of notebooks/08-verifier.ipynb: the three functions as the verifier rejects them.
TEMPLATE = r"""struct eth_hdr { unsigned char dst[6], src[6]; u16 proto; };  // as struct ethhdr, <linux/if_ether.h>
struct ip_hdr { u8 ver_ihl, tos; u16 tot_len, id, frag_off; u8 ttl, protocol; u16 check; u32 saddr, daddr; };
struct per_uid { u64 count[2048]; };

BPF_HASH(counter_table);
BPF_ARRAY(uid_counts, struct per_uid, 1);

// 1. Count calls per UID, as in the notes.
int count_calls(void *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 counter = 0;
    u64 *p = counter_table.lookup(&uid);
    counter = *p;  // TODO: R0 invalid mem access 'map_value_or_null'
    counter++;
    counter_table.update(&uid, &counter);
    return 0;
}

// 2. Count calls per UID in one array value: count[uid] for UIDs 0-2047; other UIDs are not counted.
int count_uid(void *ctx) {
    u32 zero = 0;
    struct per_uid *s = uid_counts.lookup(&zero);
    if (!s)
        return 0;
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;  // u64, as in the notes (see the chapter)
    __sync_fetch_and_add(&s->count[uid], 1);  // TODO: unbounded memory access
    return 0;
}

// 3. Drop ICMP over IPv4, pass everything else.
int drop_icmp(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct eth_hdr *eth = data;
    struct ip_hdr *ip = data + sizeof(*eth);
    // TODO: invalid access to packet
    if (eth->proto != __builtin_bswap16(0x0800))  // not IPv4 (the frame holds it big-endian)
        return XDP_PASS;
    if (ip->protocol == 1)  // IPPROTO_ICMP
        return XDP_DROP;
    return XDP_PASS;
}
"""


def test_fixes_in_another_style_pass(lab, clean_kernel):
    other = (TEMPLATE
             .replace("counter = *p;  // TODO: R0 invalid mem access 'map_value_or_null'",
                      "if (!p) {\n        counter_table.update(&uid, &(u64){1});\n        return 0;\n    }\n"
                      "    counter = *p;")
             .replace("__sync_fetch_and_add(&s->count[uid], 1);  // TODO: unbounded memory access",
                      "if (uid < 2048)\n        s->count[uid] += 1;")
             .replace("    // TODO: invalid access to packet\n",
                      "    if (data + sizeof(*eth) + sizeof(*ip) > data_end)\n        return XDP_PASS;\n"))
    passes(CHECKS["verifier"](lab, other))


def test_template_is_rejected_three_times_with_the_reasons(lab, clean_kernel):
    fails_saying_all(CHECKS["verifier"](lab, TEMPLATE), "0 of 3 done",
          "count_calls: still rejected by the verifier: R0 invalid mem access 'map_value_or_null'",
          "count_uid: still rejected by the verifier: ", "unbounded memory access",
          "drop_icmp: still rejected by the verifier: invalid access to packet")


def test_still_rejected_and_gutted_answers_say_what_is_wrong(lab, clean_kernel):
    right = solution("verifier")
    wrong = (right
             # accepted, but it counts nothing
             .replace("    u64 *p = counter_table.lookup(&uid);", "    return 0;\n    u64 *p = counter_table.lookup(&uid);")
             # off by one: count[2048] is past the end, and the verifier sees it
             .replace("if (uid >= 2048)", "if (uid > 2048)")
             # accepted, but a short frame is dropped
             .replace("if ((void *)(eth + 1) > data_end)  // too short for an Ethernet header\n        return XDP_PASS;",
                      "if ((void *)(eth + 1) > data_end)\n        return XDP_DROP;")
             .replace("if ((void *)(ip + 1) > data_end)  // too short for an IPv4 header\n        return XDP_PASS;",
                      "if ((void *)(ip + 1) > data_end)\n        return XDP_DROP;"))
    fails_saying_all(CHECKS["verifier"](lab, wrong), "0 of 3 done", "counter_table = empty",
          "count_uid: still rejected by the verifier: invalid access to map value",
          "a frame cut short in its IPv4 header got XDP_DROP")


def test_a_mask_instead_of_a_check_counts_the_wrong_uids(lab, clean_kernel):
    masked = solution("verifier").replace("if (uid >= 2048)  // now the verifier knows count[uid] stays inside the value\n        return 0;",
                                          "uid &= 2047;")
    assert masked != solution("verifier")
    fails_saying_all(CHECKS["verifier"](lab, masked), "2 of 3 done", "count_uid: accepted, but", "skip the others")
