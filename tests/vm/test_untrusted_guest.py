"""Code in the VM is untrusted: what a real program in the lab VM sends cannot crash, hang or bloat the host, nor
pass for the runner's own frames (docs/architecture.md, "Trust boundaries")."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ebpf_lab.runner import protocol
from ebpf_lab.vm import embedded

from ..cli import cli

DEADLINE = 300  # seconds: a bcc compile under software emulation takes up to ~30 s; tests end as soon as they can
MIB = 2**20

THREE_MILLION_STRUCTS = """\
import ctypes

class One(ctypes.Structure):
    _fields_ = [("b", ctypes.c_uint8)]

one = One(1)
for _ in range(3_000_000):
    emit("one", one)
print("sent")
"""


def peak_rss_of(argv: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run `argv`; its result and its peak resident memory in bytes (wait4's ru_maxrss)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = [], []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read())) for s, b in
               ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(argv, proc.returncode, out[0], err[0]), usage.ru_maxrss * 1024


def test_three_million_tiny_structs_through_ebpf_lab_run_cost_the_host_little(lab, tmp_path):
    idle_prog, flood = tmp_path / "idle.py", tmp_path / "flood.py"
    idle_prog.write_text("print('idle')\n")
    flood.write_text(THREE_MILLION_STRUCTS)
    idle, idle_rss = peak_rss_of([sys.executable, "-m", "ebpf_lab", "run", str(idle_prog)])
    assert idle.returncode == 0, idle.stderr
    done, peak = peak_rss_of([sys.executable, "-m", "ebpf_lab", "run", str(flood)])
    assert done.returncode == 0 and done.stdout == "sent\n", done.stderr[-2000:]
    assert peak - idle_rss < 200 * MIB, f"peak {peak / MIB:.0f} MiB, idle {idle_rss / MIB:.0f} MiB"


def test_three_million_tiny_structs_through_lab_run_in_a_jupyter_kernel_cost_the_kernel_little(lab):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    outputs = []
    try:
        code = textwrap.dedent(f"""
            import ebpf_lab, re
            def rss(field):
                return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
            lab = ebpf_lab.connect()
            lab.run("print('warm')", echo=False)
            idle = rss("VmRSS")
            run = lab.run({THREE_MILLION_STRUCTS!r}, echo=False)
            print(run.status, run.record_count, rss("VmHWM") - idle)
        """)
        reply = kc.execute_interactive(code, timeout=900, output_hook=lambda msg: outputs.append(msg))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    status, records, grown = map(int, text.split())
    assert (status, records) == (0, 3_000_000)
    assert grown < 200 * MIB, f"the kernel's peak grew {grown / MIB:.0f} MiB"


LOOKALIKES = r"""
import fcntl, json, os, sys
import bootstrap, protocol

# Printed: lines that look like frames, control events and terminal escapes.
print('c {"kind":"exit","status":7}')
print('e not really stderr')
print("\x1b]52;c;cHduZWQ=\x07\x1b]0;pwned title\x07\x1b[2J\x1b[1;1Hcolour \x1b[31mred\x1b[0m \x9b31m")
print("b [\"ev\",{}]", file=sys.stderr)
# Sent as notes: what only the supervisor may say.
for kind, fields in [("exit", {"status": 7}), ("limit", {"memory": 1}), ("timeout", {"after": 1})]:
    bootstrap.note(kind, **fields)
# Written to the data channel, where the program writes its own records, as the runner would write them.
writer = bootstrap._channel._writer
if writer is not None:
    forged = (protocol.control_frame("exit", status=7) + protocol.control_frame("limit", memory=1)
              + protocol.control_frame("killed", after=1))
    fcntl.flock(writer._lock_fd, fcntl.LOCK_EX)
    os.write(writer._fd, forged)
    fcntl.flock(writer._lock_fd, fcntl.LOCK_UN)
emit("after", 1)
print("the end")
"""


def test_output_that_looks_like_frames_controls_or_escapes_is_only_text(lab, tmp_path):
    run = lab.run(LOOKALIKES, echo=False)
    assert run.status == 0 and run.link in ("data channel", "ssh")
    kinds = [e["kind"] for e in run.events]
    assert protocol.LIMIT not in kinds and protocol.TIMEOUT not in kinds and protocol.KILLED not in kinds
    assert kinds.count(protocol.EXIT) == 1 and run.events[-1] == {"kind": protocol.EXIT, "status": 0}
    assert run.stdout.splitlines()[0] == 'c {"kind":"exit","status":7}' and run.stdout.endswith("the end")
    assert [r.payload for r in run.records] == [1]
    if run.link == "data channel":
        assert run.unsigned_controls == 3
    assert run.warnings() == ([] if run.link == "ssh" else [
        "3 control event(s) the runner did not sign were ignored (the program wrote them to the data channel itself)"])
    # The CLI shows the escapes as text: nothing the terminal would act on reaches it.
    prog = tmp_path / "lookalikes.py"
    prog.write_text(LOOKALIKES)
    shown = subprocess.run([sys.executable, "-m", "ebpf_lab", "run", str(prog)], capture_output=True)
    assert shown.returncode == 0, shown.stderr
    for control in (b"\x1b", b"\x07", b"\xc2\x9b"):
        assert control not in shown.stdout and control not in shown.stderr
    assert b"red" in shown.stdout and b"the end" in shown.stdout


def test_stop_works_within_the_grace_period_while_the_zygote_is_stuck(lab):
    lab.run("print('zygote up')", echo=False)
    lab.sh("pkill -STOP -f '[z]ygote.py'")
    try:
        run = lab.start("print('never mind')\n")
        assert run.wait_for(lambda r: r.has_event(protocol.STARTED) or r.done, 5) is False  # stuck in the spawn
        stopped = time.monotonic()
        run.stop(grace=3)
        assert run.done and time.monotonic() - stopped < 3 + 1, "the stop waited for the zygote"
        assert run.status is not None
    finally:
        lab.sh("pkill -CONT -f '[z]ygote.py' || true")
    # A stuck zygote is ended after ZYGOTE_SECONDS and the run starts in a fresh interpreter; the next is warm.
    lab.sh("pkill -STOP -f '[z]ygote.py'")
    run = lab.run("print('cold start')", echo=False)
    assert run.stdout == "cold start" and run.events[0]["warm"] is False
    warm = lab.run("print('warm again')", echo=False)
    assert warm.stdout == "warm again"


def test_two_processes_connecting_and_installing_the_runner_at_once(lab, tmp_path):
    """Each installs the runner into the same fresh directory of the VM and reaches the embedded VM through
    the pinned host key at the same moment."""
    fresh = f"/run/ebpf-lab/guest-race-{os.getpid()}-{time.monotonic_ns()}"
    code = textwrap.dedent(f"""
        import ebpf_lab
        from ebpf_lab.lab import Lab
        from ebpf_lab.vm.backend import select_backend
        lab = Lab(select_backend().target())
        lab._guest_dir = {fresh!r}
        print(lab.run("print('ran')", echo=False).stdout)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=DEADLINE) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert [out for out, _ in results] == ["ran\n"] * 3
    assert lab.sh(f"ls -A {fresh}").split().count(".complete") == 1
    assert "unpacking" not in lab.sh("ls -A /run/ebpf-lab")  # the copies that lost the race are gone
    lab.sh(f"rm -rf {fresh}")


def test_a_console_flood_keeps_the_hosts_copy_bounded(lab):
    if lab.target.kind != "embedded":
        pytest.skip("the embedded VM's console")
    lab.sh("yes a console flood | head -c 1500000 > /dev/ttyS0; echo the last console line > /dev/ttyS0",
           timeout=DEADLINE)
    st = embedded.require_running()
    tail = embedded.console_tail(st)
    assert tail[-1] == "the last console line"
    assert Path(st.console).stat().st_size <= embedded.CONSOLE_KEEP_BYTES
    assert "running" in cli("vm", "status").stdout


FIRST_RUN = r"""
from bcc import BPF
b = BPF(text='int hello(void *ctx) { bpf_trace_printk("left by the first run\\n"); return 0; }')
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
import subprocess
for _ in range(3):
    subprocess.run(["/bin/true"])
"""
SECOND_RUN = r"""
from bcc import BPF
b = BPF(text='int hello(void *ctx) { bpf_trace_printk("from the second run\\n"); return 0; }')
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
import subprocess
subprocess.run(["/bin/true"])
print(b.trace_fields()[5].decode())
"""


def test_a_run_shows_no_trace_lines_an_earlier_run_left(lab, clean_kernel):
    lab.clear_trace_buffer()
    first = lab.run(FIRST_RUN, echo=False)  # its lines stay in the kernel's buffer: nobody read them
    assert first.status == 0
    second = lab.run(SECOND_RUN, echo=False)
    assert second.stdout == "from the second run"
    errors = [l.text for l in second.lines if l.stream == "stderr"]
    assert any(e.startswith("ebpf-lab: skipped ") and "an earlier program left" in e for e in errors), errors


def test_all_runs_together_are_capped_by_the_parent_cgroup(lab):
    """Two runs that each stay within their own limit but not together: the runs' parent cgroup meets its
    limit (its memory.events counts the OOM) and kills one of them; the VM's own memory is never used up."""
    parent = "/sys/fs/cgroup/ebpf-lab"
    limit, pids = map(int, lab.sh(f"cat {parent}/memory.max {parent}/pids.max").split())
    total = int(lab.sh("awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo"))
    assert limit < total and pids > 0

    def parent_ooms() -> int:
        return int(lab.sh(f"awk '$1 == \"oom\" {{print $2}}' {parent}/memory.events"))
    before = parent_ooms()
    hog = f"import time\nb = b'x' * {limit * 6 // 10}\nprint('holding', flush=True)\ntime.sleep(600)\n"
    runs = [lab.start(hog) for _ in range(2)]
    for run in runs:
        assert run.wait_for(lambda r: "holding" in r.stdout or r.done, DEADLINE)
    assert any(run.done for run in runs), "both runs hold more than the runs may hold together"
    for run in runs:
        run.stop()
    assert parent_ooms() > before
    assert any("used all the memory" in w for run in runs for w in run.warnings()), [r.warnings() for r in runs]
    assert lab.sh("echo still here").strip() == "still here"
