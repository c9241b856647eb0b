"""One module per chapter exercise, named after its chapter (ch01_kprobes for 01-kprobes.ipynb).

Each holds NAME (what `%%exercise NAME` and `show_solution(NAME)` take), a `check(lab, answer) -> Verdict`
that gathers what the kernel did while the answer ran, and the pure `judge...` functions that turn that
evidence into a verdict (unit-tested without a VM). The reference solution is beside it in
`course/solutions/`, under the module's name. A new chapter adds a module here and a line in
`course/__init__.py`.
"""
