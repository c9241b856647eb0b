"""Chapter exercises: self-checks that judge the learner's answer by what the kernel did, and
reference solutions to reveal on purpose (one module per chapter in `exercises/`, its solution
in `solutions/` under the same name)."""
from .exercises import (ch01_kprobes, ch02_maps, ch03_perf_and_ring_buffers, ch04_tail_calls,
                        ch05_bytecode_and_registers, ch06_bpftool, ch07_syscalls_and_pinning, ch08_verifier,
                        ch09_core_and_libbpf, ch10_program_types, ch11_measuring, ch12_xdp_and_tc)
from .setup_check import check_setup
from .solutions import show_solution, solution
from .verdict import Verdict

# The chapters' exercises, in chapter order: a new chapter adds its module here.
EXERCISES = [ch01_kprobes, ch02_maps, ch03_perf_and_ring_buffers, ch04_tail_calls, ch05_bytecode_and_registers,
             ch06_bpftool, ch07_syscalls_and_pinning, ch08_verifier, ch09_core_and_libbpf, ch10_program_types,
             ch11_measuring, ch12_xdp_and_tc]
# Exercise name (as in %%exercise NAME and show_solution(NAME)) -> its check.
CHECKS = {exercise.NAME: exercise.check for exercise in EXERCISES}

__all__ = ["CHECKS", "EXERCISES", "Verdict", "check_setup", "show_solution", "solution"]
