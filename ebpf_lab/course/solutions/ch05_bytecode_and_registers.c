// Chapter 5 exercise: return 1 when root runs this, 0 for anyone else.
int answer(void *ctx) {
    u32 uid = bpf_get_current_uid_gid();  // the low 32 bits are the UID
    if (uid == 0)
        return 1;
    return 0;
}
