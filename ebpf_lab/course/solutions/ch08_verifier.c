// Chapter 8 exercise: three functions the verifier rejected, fixed so that it accepts them and they
// still do their job.
struct eth_hdr { unsigned char dst[6], src[6]; u16 proto; };  // as struct ethhdr, <linux/if_ether.h>
struct ip_hdr { u8 ver_ihl, tos; u16 tot_len, id, frag_off; u8 ttl, protocol; u16 check; u32 saddr, daddr; };
struct per_uid { u64 count[2048]; };

BPF_HASH(counter_table);
BPF_ARRAY(uid_counts, struct per_uid, 1);

// 1. Count calls per UID, as in the notes.
int count_calls(void *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 counter = 0;
    u64 *p = counter_table.lookup(&uid);
    if (p != 0)  // the lookup returns NULL for a UID seen for the first time
        counter = *p;
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
    if (uid >= 2048)  // now the verifier knows count[uid] stays inside the value
        return 0;
    __sync_fetch_and_add(&s->count[uid], 1);
    return 0;
}

// 3. Drop ICMP over IPv4, pass everything else.
int drop_icmp(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct eth_hdr *eth = data;
    struct ip_hdr *ip = data + sizeof(*eth);
    if ((void *)(eth + 1) > data_end)  // too short for an Ethernet header
        return XDP_PASS;
    if (eth->proto != __builtin_bswap16(0x0800))  // not IPv4 (the frame holds it big-endian)
        return XDP_PASS;
    if ((void *)(ip + 1) > data_end)  // too short for an IPv4 header
        return XDP_PASS;
    if (ip->protocol == 1)  // IPPROTO_ICMP
        return XDP_DROP;
    return XDP_PASS;
}
