"""Runs in the lab VM: a generic libbpf loader, for judging BPF objects the way a skeleton loader runs them.

`python3 libbpf_loader.py OBJ USER COUNT CMD...` opens and loads OBJ with the VM's libbpf, attaches
every program by its SEC() name, starts CMD COUNT times as USER (each one a direct child of this
process, so its parent pid is known), then reads what the programs left: every ring buffer record and
every entry of the hash and array maps. It prints one JSON object and exits, which unloads everything.
"""
import ctypes
import json
import os
import pwd
import subprocess
import sys

# enum bpf_map_type values (include/uapi/linux/bpf.h): the kinds of map this loader can read.
RINGBUF, HASH, ARRAY, LRU_HASH = 27, 1, 2, 9
RECORDS_MAX = 10000  # execs by other users of the VM keep arriving; a bound on what is kept

_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
_p, _u32, _int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
for name, restype, argtypes in [
        ("bpf_object__open_file", _p, [ctypes.c_char_p, _p]), ("bpf_object__load", _int, [_p]),
        ("bpf_object__close", None, [_p]), ("bpf_object__next_program", _p, [_p, _p]),
        ("bpf_object__next_map", _p, [_p, _p]), ("bpf_program__attach", _p, [_p]),
        ("bpf_program__name", ctypes.c_char_p, [_p]), ("bpf_program__section_name", ctypes.c_char_p, [_p]),
        ("bpf_program__fd", _int, [_p]), ("bpf_link__destroy", _int, [_p]),
        ("bpf_map__name", ctypes.c_char_p, [_p]), ("bpf_map__type", _int, [_p]), ("bpf_map__fd", _int, [_p]),
        ("bpf_map__key_size", _u32, [_p]), ("bpf_map__value_size", _u32, [_p]),
        ("bpf_map_get_next_key", _int, [_int, _p, _p]), ("bpf_map_lookup_elem", _int, [_int, _p, _p]),
        ("ring_buffer__new", _p, [_int, _p, _p, _p]), ("ring_buffer__add", _int, [_p, _int, _p, _p]),
        ("ring_buffer__consume", _int, [_p]), ("ring_buffer__free", None, [_p])]:
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, argtypes

SAMPLE_CB = ctypes.CFUNCTYPE(_int, _p, _p, ctypes.c_size_t)


def _each(next_fn, obj):
    item = next_fn(obj, None)
    while item:
        yield item
        item = next_fn(obj, item)


def _entries(fd, key_size, value_size):
    """Every key and value of a hash or array map, as hex strings."""
    found, key, nxt, value = {}, None, ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(value_size)
    while len(found) < RECORDS_MAX and _lib.bpf_map_get_next_key(fd, key, nxt) == 0:
        if _lib.bpf_map_lookup_elem(fd, nxt, value) == 0:
            found[nxt.raw.hex()] = value.raw.hex()
        key = ctypes.create_string_buffer(nxt.raw, key_size)
    return found


def run(path, user, count, command):
    report = {"programs": [], "ringbufs": {}, "maps": {}, "parent": os.getpid(), "grandparent": os.getppid(),
              "children": [], "error": None}
    obj = _lib.bpf_object__open_file(path.encode(), None)
    if not obj:
        report["error"] = f"libbpf could not open {path}: {os.strerror(ctypes.get_errno())}"
        return report
    links, rb, callbacks = [], None, []
    try:
        if _lib.bpf_object__load(obj) != 0:
            report["error"] = "libbpf could not load the object (the verifier's or libbpf's log is above)"
            return report
        for prog in _each(_lib.bpf_object__next_program, obj):
            link = _lib.bpf_program__attach(prog)
            error = None if link else os.strerror(ctypes.get_errno())
            report["programs"].append({"name": _lib.bpf_program__name(prog).decode(),
                                       "section": _lib.bpf_program__section_name(prog).decode(),
                                       "attached": bool(link), "error": error})
            if link:
                links.append(link)
        maps = list(_each(_lib.bpf_object__next_map, obj))
        for m in maps:
            if _lib.bpf_map__type(m) == RINGBUF:
                records = report["ringbufs"].setdefault(_lib.bpf_map__name(m).decode(), [])

                def keep(_ctx, data, size, records=records):
                    if len(records) < RECORDS_MAX:
                        records.append(ctypes.string_at(data, size).hex())
                    return 0
                callbacks.append(SAMPLE_CB(keep))  # ctypes must keep the callback alive while libbpf holds it
                fd = _lib.bpf_map__fd(m)
                if rb is None:
                    rb = _lib.ring_buffer__new(fd, callbacks[-1], None, None)
                else:
                    _lib.ring_buffer__add(rb, fd, callbacks[-1], None)
        if links:
            account = pwd.getpwnam(user)
            for _ in range(count):
                child = subprocess.Popen(command, user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                report["children"].append(child.pid)
                child.wait()
        if rb:
            # A program writes its record during the exec itself: by now every record is in the buffer.
            _lib.ring_buffer__consume(rb)
        for m in maps:
            if _lib.bpf_map__type(m) in (HASH, ARRAY, LRU_HASH):
                report["maps"][_lib.bpf_map__name(m).decode()] = _entries(
                    _lib.bpf_map__fd(m), _lib.bpf_map__key_size(m), _lib.bpf_map__value_size(m))
        return report
    finally:
        if rb:
            _lib.ring_buffer__free(rb)
        for link in links:
            _lib.bpf_link__destroy(link)
        _lib.bpf_object__close(obj)


if __name__ == "__main__":
    obj_path, user_name, times, *cmd = sys.argv[1:]
    print(json.dumps(run(obj_path, user_name, int(times), cmd)))
