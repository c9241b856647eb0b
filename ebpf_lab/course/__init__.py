"""Chapter exercises: self-checks that judge the learner's answer by what the kernel did, and
reference solutions to reveal on purpose."""
from .checks import (check_bytecode_exercise, check_kprobe_exercise, check_map_exercise, check_ringbuf_exercise,
                     check_setup, check_tailcall_exercise, check_xdp_exercise, xdp_globals)
from .core_check import check_core_exercise
from .network_check import check_xdp_drop_exercise
from .pinning_check import check_pinning_exercise
from .program_types_check import check_histogram_exercise
from .solutions import show_solution, solution
from .verdict import Verdict
from .verifier_check import check_verifier_exercise

# Exercise name (as in %%exercise NAME and show_solution(NAME)) -> its check, in chapter order.
CHECKS = {"kprobes": check_kprobe_exercise, "maps": check_map_exercise, "ringbuf": check_ringbuf_exercise,
          "tailcalls": check_tailcall_exercise, "bytecode": check_bytecode_exercise, "xdp": check_xdp_exercise,
          "pinning": check_pinning_exercise, "verifier": check_verifier_exercise, "core": check_core_exercise,
          "histogram": check_histogram_exercise, "xdp_drop": check_xdp_drop_exercise}

__all__ = ["CHECKS", "Verdict", "check_bytecode_exercise", "check_core_exercise", "check_histogram_exercise",
           "check_kprobe_exercise", "check_map_exercise", "check_pinning_exercise", "check_ringbuf_exercise",
           "check_setup", "check_tailcall_exercise", "check_verifier_exercise", "check_xdp_drop_exercise",
           "check_xdp_exercise", "show_solution", "solution", "xdp_globals"]
