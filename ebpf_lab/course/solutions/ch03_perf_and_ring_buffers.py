# Chapter 3 exercise: send the filename of every openat by UID 1001 (alice) through a ring buffer.
from bcc import BPF

b = BPF(text="""
BPF_RINGBUF_OUTPUT(opens, 8);
struct event { char filename[64]; };
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != 1001)
        return 0;
    struct event e = {};
    bpf_probe_read_user_str(&e.filename, sizeof(e.filename), args->filename);
    opens.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
""")


def show(ctx, data, size):
    print(b["opens"].event(data).filename.decode())


b["opens"].open_ring_buffer(show)
while True:
    b.ring_buffer_poll(timeout=100)
