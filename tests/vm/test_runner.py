"""The runner against the real kernel in the lab VM.

No test leans on how fast this machine compiles: each waits for what the run reports (running,
a line, N records) with a generous deadline, then stops the run itself.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from ebpf_lab import ProgramFailed
from ebpf_lab.errors import RunRefused
from ebpf_lab.runner import protocol
from tests.programs import HASH_MAP, HELLO, NULL_DEREF

DEADLINE = 300  # seconds: far beyond a slow compile under software emulation; tests end as soon as they can


def hellos(run) -> int:
    return sum("Hello, World!" in l.text for l in list(run.lines))


def test_hello_kprobe_line_arrives_while_execs_happen(lab, clean_kernel):
    run = lab.start(HELLO, workload=["alice:3"])
    assert run.wait_for(lambda r: hellos(r) >= 3 and r.has_event("workload"), DEADLINE), list(run.lines)
    workload = next(e for e in run.events if e["kind"] == "workload")
    assert {k: workload[k] for k in ("user", "command", "count")} == {"user": "alice", "command": ["/bin/true"],
                                                                       "count": 3}
    assert len(set(workload["pids"])) == 3 and all(isinstance(pid, int) for pid in workload["pids"])
    assert run.phase == "running"
    run.interrupt()
    assert run.status == 130
    kinds = [e["kind"] for e in run.events]
    assert kinds.index("compiled") < kinds.index("running") < kinds.index("workload")


TIMED = r'''import time
from bcc import BPF
t0 = time.monotonic()
b = BPF(text="""
#include <linux/sched.h>
int hello(void *ctx) { return 0; }
""")
t1 = time.monotonic()  # compiled; the run's clock can only start after this
b.attach_kprobe(event=b.get_syscall_fnname("execve"), fn_name="hello")
try:
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    print(f"compiled in {t1 - t0:.3f} s, then ran {time.monotonic() - t1:.3f} s")
'''


def test_timeout_counts_from_attach_not_from_start(lab, clean_kernel):
    """A 3 s timeout and a compile that may take longer: the program still gets its 3 s of running.

    Both times are measured in the VM and only a lower bound is asserted, so no machine is too slow for it.
    """
    run = lab.run(TIMED, timeout=3, echo=False)
    assert run.timed_out and run.status == 0
    compiled, ran = map(float, re.fullmatch(r"compiled in ([\d.]+) s, then ran ([\d.]+) s", run.stdout).groups())
    assert compiled > 0 and ran >= 3, run.stdout
    running = next(e for e in run.events if e["kind"] == "running")
    assert running["reason"] in ("attached", "loaded")


def test_compile_limit_stops_a_compile_that_never_ends(lab, clean_kernel):
    # clang blocks opening a FIFO nobody writes: a compile that would never finish, on any machine.
    source = ('import os\nfrom bcc import BPF\nos.mkfifo("never")\n'
              'BPF(text="#include \\"/run/ebpf-lab/' + '{cwd}' + '/never\\"\\nint f(void *c) { return 0; }")\n')
    source = source.replace("/run/ebpf-lab/{cwd}/never", "never")
    with pytest.raises(ProgramFailed) as info:
        lab.run(source, compile_timeout=4, echo=False)  # no --timeout: only the compile itself is limited
    assert "did not get running within the 4 s compile limit (bcc was still compiling)" in str(info.value)


def test_compile_limit_stops_a_program_that_never_starts(lab):
    with pytest.raises(ProgramFailed) as info:
        lab.run("import time\ntime.sleep(600)\n", timeout=5, compile_timeout=3, echo=False)
    assert "never attached a probe, loaded a program or printed anything" in str(info.value)


def test_cli_streams_hello_shows_compile_progress_and_returns_status(lab, clean_kernel, tmp_path):
    prog = tmp_path / "hello.py"
    prog.write_text(HELLO)
    cli = [sys.executable, "-m", "ebpf_lab", "run", str(prog), "--timeout", "30", "--load", "bob:2"]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # arrives while the program still runs: streamed, not buffered
    assert "Hello, World!" in first and proc.poll() is None
    proc.send_signal(2)  # Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "compiling the BPF program…" in err and re.search(r"compiled in \d+\.\d s", err)
    assert err.strip().endswith("interrupted: the program was stopped in the VM and its BPF programs unloaded")
    exit7 = tmp_path / "exit7.py"
    exit7.write_text("import sys\nprint('bye', sys.argv[1:])\nsys.exit(7)\n")
    done = subprocess.run([sys.executable, "-m", "ebpf_lab", "run", str(exit7), "a", "--", "-b"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (7, "bye ['a', '-b']\n")


def test_bcc_execsnoop_from_the_vm_sees_the_workload(lab, clean_kernel):
    """bcc's own tool, as shipped in the VM, with a timeout shorter than its compile."""
    cli = [sys.executable, "-m", "ebpf_lab", "run", "vm:/usr/sbin/execsnoop-bpfcc", "--timeout", "15",
           "--load", "alice:3"]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=DEADLINE)
    execs = [l for l in done.stdout.splitlines() if l.split()[:1] == ["true"]]
    assert len(execs) == 3, done.stdout + done.stderr
    assert "stopped after 15 s of running" in done.stderr


def test_per_uid_counts_for_two_users(lab, clean_kernel):
    def counts(run):
        last = [l.text for l in list(run.lines) if l.text.startswith("ID")][-1:]
        return {int(u): int(c) for u, c in re.findall(r"ID (\d+): (\d+)", last[0])} if last else {}

    run = lab.start(HASH_MAP, workload=["alice:5", "bob:3"])
    assert run.wait_for(lambda r: counts(r).get(1001, 0) >= 5 and counts(r).get(1002, 0) >= 3, DEADLINE), \
        list(run.lines)
    run.interrupt()


def test_interrupt_runs_keyboardinterrupt_cleanup(lab, clean_kernel):
    source = HELLO.replace("b.trace_print()", "try:\n    print('waiting', flush=True)\n    b.trace_print()\n"
                                              "except KeyboardInterrupt:\n    print('cleaned up')\n")
    run = lab.start(source)
    # Not "attached": that comes as attach_kprobe returns, a few bytecodes before the try block, and a
    # slow guest can still be there when the interrupt arrives.
    assert run.wait_for(lambda r: "waiting" in r.stdout, DEADLINE)
    run.interrupt(grace=5)
    assert run.done and run.status == 0
    assert "cleaned up" in run.stdout


def test_program_ignoring_sigint_is_killed(lab, clean_kernel):
    source = HELLO.replace("b.trace_print()", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                              "print('armed', flush=True)\ntime.sleep(600)\n")
    run = lab.start(source, timeout=2, grace=1)
    run.wait(DEADLINE)
    assert run.done and run.status == 137
    kinds = [e["kind"] for e in run.events]
    assert kinds.index("timeout") < kinds.index("killed")


ESCAPE = r'''
import os, sys, time
from bcc import BPF
if os.fork() == 0:
    os.setsid()                      # leave the process group...
    if os.fork() == 0:               # ...and the parent: a daemon the old runner could not reach
        b = BPF(text="int stay(void *ctx) { return 0; }")
        b.attach_kprobe(event=b.get_syscall_fnname("getpid"), fn_name="stay")
        with open("/run/escapee.pid", "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
while not os.path.exists("/run/escapee.pid"):
    time.sleep(0.1)
print("daemon started", flush=True)
'''


def test_a_setsid_double_fork_daemon_dies_with_the_run(lab, clean_kernel):
    lab.sh("rm -f /run/escapee.pid")
    run = lab.run(ESCAPE, timeout=DEADLINE, echo=False)
    assert run.status == 0 and "daemon started" in run.stdout
    pid = lab.sh("cat /run/escapee.pid").strip()
    assert lab.sh(f"kill -0 {pid} 2>/dev/null && echo alive || echo gone").strip() == "gone"
    assert next(e for e in run.events if e["kind"] == "started")["cgroup"] is True
    assert not run.has_event("left_loaded")


def test_a_program_that_eats_all_memory_dies_alone(lab):
    # Without a limit this thrashes a 1 GiB guest until even sshd stops answering.
    source = "import time\nhog = []\nwhile True:\n    hog.append(bytearray(16 * 2**20))\n"
    run = lab.run(source, timeout=DEADLINE, echo=False)
    assert run.status != 0
    limit = next(e for e in run.events if e["kind"] == "limit")
    assert limit["memory"] >= 1 and limit["memory_max"] < int(lab.sh("free -b | awk '/Mem:/ {print $2}'"))
    assert any("used all the memory it may use in the VM" in w for w in run.warnings())
    assert lab.sh("echo still here").strip() == "still here"


def test_a_thread_bomb_meets_the_process_limit(lab):
    # Threads count as tasks for pids.max and cost little memory, so the process limit is met first.
    source = ("import threading, time\nfor _ in range(5000):\n    try:\n"
              "        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
              "    except RuntimeError:\n        print('refused', flush=True)\n        break\n")
    run = lab.run(source, timeout=DEADLINE, echo=False)
    assert "refused" in run.stdout
    assert next(e for e in run.events if e["kind"] == "limit")["pids"] >= 1
    assert any("limit of 1024 processes" in w for w in run.warnings())
    assert lab.sh("ls /sys/fs/cgroup/ebpf-lab | grep -c run- || true").strip() == "0"


def test_objects_left_loaded_are_reported(lab):
    source = ('from bcc import BPF, libbcc\nb = BPF(text="int f(struct __sk_buff *s) { return 0; }")\n'
              'fn = b.load_func("f", BPF.SOCKET_FILTER)\n'
              'assert libbcc.lib.bpf_obj_pin(fn.fd, b"/sys/fs/bpf/ebpf_lab_test_pin") == 0\n')
    lab.sh("rm -f /sys/fs/bpf/ebpf_lab_test_pin")
    try:
        run = lab.run(source, echo=False)
        left = next(e for e in run.events if e["kind"] == "left_loaded")["objects"]
        prog = next(o for o in left if o["kind"] == "prog")
        assert prog["type"] == "socket_filter" and prog["name"] == "f"
        assert "/sys/fs/bpf/ebpf_lab_test_pin" in prog.get("pinned", [])
        assert any("still loaded after the run: prog" in w for w in run.warnings())
    finally:
        lab.sh("rm -f /sys/fs/bpf/ebpf_lab_test_pin")


def test_dropped_ssh_link_unloads_the_program(lab, clean_kernel):
    run = lab.start(HELLO)
    assert run.wait_for(lambda r: r.has_event("attached"), DEADLINE)
    assert lab.prog_ids(), "program should be loaded while running"
    pid = next(e["pid"] for e in run.events if e["kind"] == "started")
    run._proc.kill()  # what a crashed notebook kernel or a dead network does to the link
    run.wait(DEADLINE)
    deadline = time.time() + 60
    while time.time() < deadline and lab.sh(f"kill -0 {pid} && echo alive", check=False).strip():
        time.sleep(0.2)
    assert not lab.sh(f"kill -0 {pid} && echo alive", check=False).strip()


def test_timeout_is_not_held_up_by_a_host_that_stopped_reading(lab, clean_kernel):
    """The host never reads: the program floods its output, the pipes fill, and the timeout still ends it."""
    flood = ('import os\nopen("/run/flood.pid", "w").write(str(os.getpid()))\n'
             'while True:\n    print("x" * 1000)\n')
    lab.sh("rm -f /run/flood.pid")
    lab._install_guest()
    header = protocol.RunHeader(source=flood, timeout=2, grace=1)
    proc = lab.ssh.popen(f"exec python3 -u {lab._guest_dir}/supervisor.py")
    proc.stdin.write(header.encode())
    proc.stdin.flush()  # ... and from now on nobody reads proc.stdout
    try:
        deadline = time.time() + DEADLINE
        pid = ""
        while not pid and time.time() < deadline:
            pid = lab.sh("cat /run/flood.pid 2>/dev/null", check=False).strip()
            time.sleep(0.5)
        assert pid
        while time.time() < deadline and lab.sh(f"kill -0 {pid} 2>/dev/null && echo alive", check=False).strip():
            time.sleep(0.5)
        assert not lab.sh(f"kill -0 {pid} 2>/dev/null && echo alive", check=False).strip()
    finally:
        proc.kill()


def test_unbuffered_output_reaches_the_host_while_the_program_runs(lab):
    source = ("import subprocess, sys, time\nprint('from the program')\n"
              "subprocess.Popen([sys.executable, '-c', 'print(\"from a child python\"); import time; time.sleep(60)'])\n"
              "time.sleep(60)\n")
    run = lab.start(source)
    assert run.wait_for(lambda r: "from a child python" in r.stdout, DEADLINE), run.stdout
    assert not run.done
    run.interrupt(grace=1)


def test_emit_from_forked_children_never_interleaves(lab):
    source = ('import os\npids = []\nfor c in range(4):\n    pid = os.fork()\n    if pid == 0:\n'
              '        for i in range(500):\n            emit("big", {"child": c, "i": i, "pad": "x" * 5000})\n'
              '        os._exit(0)\n    pids.append(pid)\nfor pid in pids:\n    os.waitpid(pid, 0)\n'
              'emit("done", len(pids))\n')
    run = lab.run(source, echo=False)
    assert run.malformed_frames == 0
    assert run.record_count == 2001 and {(r.payload["child"]) for r in run.records if r.name == "big"} == {0, 1, 2, 3}


def test_the_host_survives_what_the_guest_sends(lab):
    """Frames the host cannot read are counted; a 20 MB line arrives in pieces; the run ends normally."""
    # emit is the channel's bound method, whether the program was forked from the warm interpreter or not.
    source = ('import protocol, sys\nch = emit.__self__\n'
              'ch.sock.send(protocol.frame(protocol.RECORDS, b"{not json"))\n'
              'ch.sock.send(protocol.frame(protocol.CONTROL, b"[1, 2]"))\n'
              'ch.sock.send(protocol.frame(protocol.RECORDS, b"y" * 1_500_000))\n'
              'sys.stdout.write("x" * 20_000_000 + "\\n")\nemit("after", 1)\n')
    run = lab.run(source, echo=False)
    # The control frame never leaves the VM: the supervisor passes on only the notes a program may send.
    assert run.status == 0 and run.malformed_frames == 2
    assert run.line_count >= 20_000_000 // protocol.MAX_LINE and sum(len(l.text) for l in run.lines) == 20_000_000
    assert [r.payload for r in run.records] == [1]
    with pytest.raises(ProgramFailed, match="over the 1048576 byte limit"):
        lab.run("emit('huge', 'z' * 2_000_000)\n", echo=False)


def test_workload_runs_as_the_user_in_the_runs_cgroup(lab):
    lab.sh("rm -f /tmp/workload.txt")
    command = "/bin/sh -c 'id -u; echo $HOME $USER; cat /proc/self/cgroup' >> /tmp/workload.txt"
    run = lab.start("import time\nprint('ready', flush=True)\ntime.sleep(600)\n", workload=[f"alice:1:/bin/sh -c \"{command}\""])
    try:
        assert run.wait_for(lambda r: r.has_event("workload"), DEADLINE)
    finally:
        run.interrupt(grace=1)
    uid, env, cg = lab.sh("cat /tmp/workload.txt").splitlines()[:3]
    assert (uid, env) == ("1001", "/home/alice alice")
    assert re.fullmatch(r"0::/ebpf-lab/run-\d+", cg)


def test_bad_workloads_are_refused_before_compiling(lab):
    with pytest.raises(RunRefused, match="there is no user 'carol' in the lab VM — use one of the lab users: alice, bob"):
        lab.run(HELLO, workload=["carol:2"], echo=False)
    with pytest.raises(RunRefused, match="command '/no/such/tool' not found"):
        lab.run(HELLO, workload=["alice:2:/no/such/tool"], echo=False)


def test_warm_runs_fork_from_the_zygote(lab):
    lab.run("print('warm-up')", echo=False)  # the first run in a fresh VM starts the zygote
    run = lab.run("import sys\nprint('bcc' in sys.modules)", echo=False)
    assert run.events[0]["warm"] is True and run.stdout == "True"
    lab.sh("pkill -f '[z]ygote.py'; rm -f /run/ebpf-lab/guest-*/zygote.sock")
    cold = lab.run("print('cold')", echo=False)  # falls back to a fresh interpreter, and restarts the zygote
    assert cold.events[0]["warm"] is False and cold.stdout == "cold"


def test_two_runs_at_once_do_not_interfere(lab, clean_kernel):
    a = lab.start("import time\nfor i in range(20):\n    print('A', i, flush=True)\n    emit('a', i)\n    time.sleep(0.05)\n")
    b = lab.start("import time\nfor i in range(20):\n    print('B', i, flush=True)\n    emit('b', i)\n    time.sleep(0.05)\n")
    a.wait(DEADLINE), b.wait(DEADLINE)
    assert [l.text for l in a.lines] == [f"A {i}" for i in range(20)]
    assert [l.text for l in b.lines] == [f"B {i}" for i in range(20)]
    assert [r.payload for r in a.records] == list(range(20)) and {r.name for r in b.records} == {"b"}


def test_compile_error_points_at_cell_line(lab, clean_kernel):
    source = 'from bcc import BPF\nprogram = r"""\nint hello(void *ctx) {\n    undeclared = 1;\n    return 0;\n}\n"""\nb = BPF(text=program)\n'
    with pytest.raises(ProgramFailed) as info:
        lab.run(source, echo=False)
    text = str(info.value)
    assert "does not compile" in text
    assert "cell line 4, column 5: use of undeclared identifier 'undeclared'" in text
    assert "    4 |     undeclared = 1;" in text


def test_verifier_rejection_shows_reason(lab, clean_kernel):
    with pytest.raises(ProgramFailed) as info:
        lab.run(NULL_DEREF, echo=False)
    assert "verifier rejected the program: R0 invalid mem access 'map_value_or_null'" in str(info.value)


def test_python_exception_traceback_trimmed_to_cell(lab, clean_kernel):
    with pytest.raises(ProgramFailed) as info:
        lab.run("from bcc import BPF\nb = BPF(text='int f(void *c) { return 0; }')\nb['nope']\n", echo=False)
    text = str(info.value)
    assert text.startswith("the program raised KeyError")
    assert 'File "<cell>", line 3' in text and "bcc/__init__.py" not in text


def test_100k_lines_and_records_are_capped_but_logged(lab):
    source = ("import sys\nfor i in range(100000):\n    sys.stdout.write(f'line {i}\\n')\n"
              "for i in range(100000):\n    emit('n', i)\n")
    run = lab.run(source, echo=False)
    assert run.line_count == 100000 and run.record_count == 100000
    assert len(run.lines) < 100000 and run.dropped_lines == 100000 - len(run.lines)
    assert run.lines[-1].text == "line 99999" and run.records[-1].payload == 99999
    assert sum(1 for x in run.read_log()) == 200000


def test_programs_that_end_at_once_report_their_status(lab):
    lab.run("pass", echo=False)  # make sure the zygote is up
    statuses = {lab.run(f"import sys\nsys.exit({n})", echo=False).status for n in (0, 3, 4, 5, 6, 7)}
    assert statuses == {0, 3, 4, 5, 6, 7}


EVENTS_TO_HOST = r'''
import ctypes as ct
class Event(ct.Structure):
    _fields_ = [("pid", ct.c_uint), ("comm", ct.c_char * 16)]
for i in range(2000):
    emit("ev", Event(i, b"cat\n"))
print("sent", flush=True)
'''


def test_records_take_the_data_channel_or_fall_back_to_ssh(lab):
    """The embedded VM offers serial ports as data channels: struct events travel over one uncompressed.
    A run whose port the guest does not have still gets everything over ssh, and the port is free after."""
    import dataclasses

    from ebpf_lab.lab import Lab
    run = lab.run(EVENTS_TO_HOST, echo=False)
    expected = [{"pid": i, "comm": "cat\n"} for i in range(2000)]
    assert [r.payload for r in run.records] == expected and run.stdout == "sent"
    assert run.link == ("data channel" if lab.target.data_channel else "ssh")
    if lab.target.data_channel is None:
        return  # Vagrant and ssh:// machines have only ssh, which the rest of the suite covers
    (_, socket_path), *_ = lab.target.data_channel.ports
    nowhere = dataclasses.replace(lab.target.data_channel, ports=(("ebpf-lab.no-such-port", socket_path),))
    fallback = Lab(dataclasses.replace(lab.target, data_channel=nowhere))
    run = fallback.run(EVENTS_TO_HOST, echo=False)
    assert [r.payload for r in run.records] == expected and run.stdout == "sent"
    assert run.link == "ssh"
    assert lab.run(EVENTS_TO_HOST, echo=False).link == "data channel"
