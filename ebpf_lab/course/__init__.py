"""Chapter exercises' self-checks: run the learner's answer in the VM, say pass or fail with a hint."""
from .checks import (Verdict, check_bytecode_exercise, check_kprobe_exercise, check_map_exercise, check_ringbuf_exercise, check_setup,
                     check_tailcall_exercise, check_xdp_exercise, xdp_globals)

__all__ = ["Verdict", "check_bytecode_exercise", "check_kprobe_exercise", "check_map_exercise", "check_ringbuf_exercise", "check_setup",
           "check_tailcall_exercise", "check_xdp_exercise", "xdp_globals"]
