// Chapter 6 exercise: count every packet in the global variable `packets`, and let each one through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int packets = 0;

SEC("xdp")
int count(struct xdp_md *ctx) {
    __sync_fetch_and_add(&packets, 1);  // atomic: packets can arrive on several CPUs at once
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
