"""The VM-side helpers' pure logic, run here on the host (labtools.py is stdlib only)."""
import importlib.util
import struct
from pathlib import Path

import ebpf_lab

spec = importlib.util.spec_from_file_location(
    "labtools", Path(ebpf_lab.__file__).parent / "runner" / "guest" / "labtools.py")
labtools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(labtools)


def test_helper_calls_in_translated_code_are_named_through_kallsyms():
    base = 0xFFFFFFFF81000000
    xlated = (struct.pack("<BBhi", 0xB7, 1, 0, 1)            # r1 = 1
              + struct.pack("<BBhi", 0x85, 0, 0, 0x1F0)      # call base+0x1f0
              + struct.pack("<BBhi", 0x85, 0x10, 0, 3)       # call pc+3 (a BPF-to-BPF call: not a helper)
              + struct.pack("<BBhi", 0x95, 0, 0, 0))         # exit
    kallsyms = (f"{base:016x} T __bpf_call_base\n"
                f"{base + 0x1F0:016x} T __htab_map_lookup_elem\n"
                f"{base + 0x300:016x} t something_else\n")
    assert labtools.call_targets(xlated, kallsyms) == {0x1F0: "__htab_map_lookup_elem"}
    assert labtools.call_targets(xlated, "no base here\n".replace("no base here", f"{base:016x} T other")) == {}


def test_unknown_commands_are_refused():
    try:
        labtools.main(["no-such-command"])
    except SystemExit as e:
        assert "unknown command 'no-such-command'" in str(e)
    else:
        raise AssertionError("expected SystemExit")
