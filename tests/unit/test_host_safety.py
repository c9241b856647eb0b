"""The host's side of the trust boundary, logic only: private caches, pinned host keys, bounded logs and
console, a run nobody reads never left running, a stuck zygote given up on (tests/vm/test_untrusted_guest.py
shows each against the real VM)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ebpf_lab import lab as lab_module
from ebpf_lab import paths
from ebpf_lab.errors import SshFailed, UnsafeCacheDir
from ebpf_lab.transport.ssh import SshTransport
from ebpf_lab.transport.target import SshTarget
from ebpf_lab.vm import embedded, vagrant



def test_a_cache_dir_others_can_write_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("EBPF_LAB_CACHE", str(shared))
    with pytest.raises(UnsafeCacheDir, match="chmod go-w"):
        paths.cache_dir()
    shared.chmod(0o755)
    assert paths.cache_dir() == shared
    fresh = tmp_path / "new" / "cache"
    monkeypatch.setenv("EBPF_LAB_CACHE", str(fresh))
    assert paths.cache_dir() == fresh and (fresh.stat().st_mode & 0o777) == 0o700


def test_qmp_and_the_data_ports_live_in_the_private_runtime_dir(tmp_path, short_tmp, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    control = embedded._control_dir()
    assert control.parent == paths.runtime_dir() and (control.stat().st_mode & 0o777) == 0o700
    image = SimpleNamespace(kernel=tmp_path / "k", disk=tmp_path / "d")
    monkeypatch.setattr(embedded, "public_key_blob", lambda: "KEY")
    cmd = embedded.qemu_command(image, "tcg", 2222, control / "qmp.sock", control)
    assert f"unix:{control / 'qmp.sock'},server=on,wait=off" in cmd
    assert "-serial" in cmd and cmd[cmd.index("-serial") + 1] == "chardev:console"
    assert f"ringbuf,id=console,size={embedded.CONSOLE_RING_BYTES}" in cmd
    assert not any(arg.startswith("file:") for arg in cmd)  # no file the guest can grow


def test_the_console_copy_on_the_host_stays_bounded(tmp_path, monkeypatch):
    st = SimpleNamespace(qmp=str(tmp_path / "qmp.sock"), console=str(tmp_path / "console.log"))
    import base64
    floods = [b"x" * 700_000 + b"\n", b"y" * 900_000 + b"\nlast line\n"]
    monkeypatch.setattr(embedded, "qmp", lambda *a, **k: {"return": base64.b64encode(floods.pop(0)).decode()})
    embedded.save_console(st)
    embedded.save_console(st)
    assert Path(st.console).stat().st_size == embedded.CONSOLE_KEEP_BYTES
    assert Path(st.console).read_bytes().endswith(b"\nlast line\n")
    monkeypatch.setattr(embedded, "qmp", lambda *a, **k: (_ for _ in ()).throw(ConnectionRefusedError()))
    assert embedded.console_tail(st)[-1] == "last line"  # qemu gone: the copy still tells


def test_the_embedded_vms_pinned_key_is_written_only_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    image = tmp_path / "image"
    image.mkdir()
    (image / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAAKEY root@ebpf-lab\n")
    st = SimpleNamespace(image=embedded.Image(image), port=2222, data_ports_dir="")
    monkeypatch.setattr(embedded, "require_running", lambda: st)
    monkeypatch.setattr(embedded, "identity_file", lambda: tmp_path / "id")
    known = tmp_path / "known_hosts"
    embedded.EmbeddedVM().target()
    assert known.read_text() == f"{embedded.HOST_KEY_ALIAS} ssh-ed25519 AAAAKEY\n"
    before = known.stat().st_ino
    embedded.EmbeddedVM().target()
    assert known.stat().st_ino == before  # untouched: a concurrent ssh never reads a half-written file
    assert not list(tmp_path.glob(".known_hosts.*"))


def test_vagrant_is_reached_with_its_key_pinned_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path / "cache"))
    dotfile = tmp_path / ".vagrant"
    (dotfile / "machines" / "default" / "libvirt").mkdir(parents=True)
    (dotfile / "machines" / "default" / "libvirt" / "id").write_text("9f1c-abc\n")
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(dotfile))
    config = ("Host default\n  HostName 192.168.121.5\n  User vagrant\n  Port 22\n  UserKnownHostsFile /dev/null\n"
              "  StrictHostKeyChecking no\n  PasswordAuthentication no\n  IdentityFile /k/private_key\n"
              "  IdentitiesOnly yes\n  LogLevel FATAL\n")
    monkeypatch.setattr(vagrant.VagrantVM, "running", lambda self: True)
    monkeypatch.setattr(vagrant.subprocess, "run", lambda *a, **k: SimpleNamespace(stdout=config))
    target = vagrant.VagrantVM().target()
    options = {o.split("=", 1)[0].lower(): o.split("=", 1)[1] for o in target.options}
    assert options["stricthostkeychecking"] == "accept-new"
    assert options["userknownhostsfile"] == str(tmp_path / "cache" / "vagrant-known-hosts" / "9f1c-abc")
    assert options["hostkeyalias"] == "ebpf-lab-vagrant-9f1c-abc"
    assert sum(o.lower().startswith("stricthostkeychecking") for o in target.options) == 1
    assert "ssh-keygen -R ebpf-lab-vagrant-9f1c-abc" in target.host_key_fix


def test_a_changed_host_key_is_refused_with_the_fix():
    target = SshTarget(kind="vagrant", host="192.168.121.5", port=22, user="vagrant", host_key_fix="forget it: X")
    error = SshTransport(target).unreachable(
        b"@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n")
    assert isinstance(error, SshFailed) and "not the one pinned" in str(error) and error.fix == "forget it: X"


def test_run_logs_stay_within_their_count_and_their_total_size(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    logs = tmp_path / "runs"
    logs.mkdir()
    monkeypatch.setattr(lab_module, "MAX_LOG_BYTES", 100)
    monkeypatch.setattr(lab_module, "MAX_LOGS_BYTES", 1000)
    for i in range(12):
        (logs / f"20261206-0000{i:02d}-x.log").write_bytes(b"x" * 100)
    lab_module._new_log_path()
    kept = sorted(p.name for p in logs.glob("*.log"))
    assert sum(p.stat().st_size for p in logs.glob("*.log")) + 100 <= 1000
    assert kept[-1] == "20261206-000011-x.log" and len(kept) == 9
    for i in range(60):
        (logs / f"20261207-0000{i:02d}-y.log").touch()
    lab_module._new_log_path()
    assert len(list(logs.glob("*.log"))) == lab_module.KEEP_LOGS - 1


def test_a_run_nobody_can_read_is_not_left_running(tmp_path, monkeypatch):
    """The run log cannot be created (a full disk, an unwritable cache): ssh is ended, so the supervisor
    stops the program, and the data port is let go."""
    started = []

    class FakeSsh:
        def run(self, *a, **k):
            return SimpleNamespace(stdout=b"", returncode=0)

        def popen(self, command):
            proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            started.append(proc)
            return proc

    closed = []
    channel = SimpleNamespace(spec=None, close=lambda: closed.append(1))
    lab = lab_module.Lab.__new__(lab_module.Lab)
    lab.target = SimpleNamespace(data_channel=object())
    lab.ssh, lab._guest_dir, lab._bundle = FakeSsh(), "/run/x", b""
    monkeypatch.setattr(lab_module.DataChannel, "lease", lambda route: channel)
    monkeypatch.setattr(lab_module, "_new_log_path", lambda: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError, match="No space"):
        lab.start("print(1)")
    assert started[0].poll() is not None and closed == [1]


@pytest.fixture
def stuck_zygote(tmp_path):
    """A process that listens where the zygote would and never answers (a SIGSTOPped zygote, say)."""
    path = tmp_path / "zygote.sock"
    code = ("import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(8)\n"
            "conns = []\nwhile True:\n    conns.append(s.accept())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    while not path.exists():
        time.sleep(0.01)
    yield proc, path
    proc.kill()
    proc.wait()


def spawn_args(tmp_path):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return (str(tmp_path / "p.py"), "<cell>", [], str(tmp_path), None, out_w, err_w, theirs.fileno(), None)


def test_a_zygote_that_does_not_answer_is_given_up_on_and_ended(tmp_path, stuck_zygote, monkeypatch, guest_import):
    supervisor = guest_import("supervisor")
    proc, path = stuck_zygote
    monkeypatch.setattr(supervisor.WarmChild, "SOCKET", str(path))
    monkeypatch.setattr(supervisor, "ZYGOTE_SECONDS", 0.5)
    start = time.monotonic()
    assert supervisor.WarmChild.spawn(*spawn_args(tmp_path)) is None
    assert time.monotonic() - start < 30  # a hang guard: it gives up after ZYGOTE_SECONDS
    assert proc.wait(10) == -9 and not path.exists()  # the next run starts a fresh zygote


def test_a_stop_while_waiting_for_the_zygote_ends_the_wait(tmp_path, stuck_zygote, monkeypatch, guest_import):
    supervisor = guest_import("supervisor")
    _, path = stuck_zygote
    monkeypatch.setattr(supervisor.WarmChild, "SOCKET", str(path))
    monkeypatch.setattr(supervisor, "ZYGOTE_SECONDS", 3600)  # only the stop can end it
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 3
    assert supervisor.WarmChild.spawn(*spawn_args(tmp_path), cancelled=cancelled) is None
    assert len(asked) >= 4  # it kept waiting until the stop came


def test_trace_lines_older_than_the_program_are_skipped_and_counted(capsys, guest_import):
    bootstrap = guest_import("bootstrap")
    lines = [b"  python3-1 [000] d..31  100.000001: bpf_trace_printk: old one",
             b"  python3-1 [001] d..31  100.500000: bpf_trace_printk: old two",
             b"CPU:1 [LOST 3 EVENTS]",
             b"  python3-2 [000] d..31  200.250000: bpf_trace_printk: mine"]
    readline = bootstrap._lines_of_this_run(lambda self, nonblocking=False: lines.pop(0))
    bootstrap._started_at_trace_time = 150.0
    assert readline(None) == b"CPU:1 [LOST 3 EVENTS]"
    assert readline(None).endswith(b"mine")
    assert "skipped 2 trace line(s) an earlier program left" in capsys.readouterr().err
    stats = (b"entries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\noldest event ts:   175.879974\n"
             b"now ts:   233.978993\ndropped events: 0\nread events: 2\n")  # a 6.1 kernel's, as it is
    assert bootstrap.now_in_stats(stats) == 233.978993
