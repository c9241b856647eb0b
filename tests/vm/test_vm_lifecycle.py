"""`ebpf-lab vm ...` as a learner uses it, and the one-line errors for what goes wrong."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ebpf_lab.errors import SshFailed
from ebpf_lab.transport.ssh import SshTransport
from ebpf_lab.vm import embedded
from ebpf_lab.transport.target import SshTarget

from ..cli import cli


@pytest.fixture
def own_cache(tmp_path, lab):
    """A separate cache (so a second VM, own state) that shares the built image."""
    (tmp_path / "images").mkdir()
    built = embedded.require_running().image
    (tmp_path / "images" / built.dir.name).symlink_to(built.dir)
    env = {"EBPF_LAB_CACHE": str(tmp_path), "EBPF_LAB_TARGET": "embedded"}
    yield env
    cli("vm", "down", env=env)


def test_up_status_ssh_down(own_cache):
    up = cli("vm", "up", env=own_cache)
    assert up.returncode == 0, up.stderr
    assert "lab VM up in" in up.stdout
    status = cli("vm", "status", env=own_cache)
    assert status.returncode == 0 and "running" in status.stdout
    uname_r = embedded.require_running().image.meta["kernel"]
    assert f"image: kernel {uname_r}, built 20" in status.stdout, status.stdout
    assert cli("vm", "up", env=own_cache).returncode == 0  # idempotent: the same VM
    uname = cli("vm", "ssh", "uname", "-r", env=own_cache)
    assert uname.stdout.strip().endswith("cloud-amd64"), uname.stderr
    users = cli("vm", "ssh", "id", "-u", "alice", ";", "id", "-u", "bob", env=own_cache)
    assert users.stdout.split() == ["1001", "1002"]
    # Only key auth: the VM's sshd refuses passwords.
    conf = cli("vm", "ssh", "sshd", "-T", env=own_cache).stdout
    assert "passwordauthentication no" in conf and "permitrootlogin without-password" in conf
    # A vanished host is noticed within ~15 s, so its run is stopped and unloaded.
    assert "clientaliveinterval 5" in conf and "clientalivecountmax 3" in conf
    assert cli("vm", "down", env=own_cache).stdout.strip() == "lab VM stopped"
    after = cli("vm", "status", env=own_cache)
    assert after.returncode == 3 and "not running (start it with: ebpf-lab vm up)" in after.stdout


def test_course_makes_the_embedded_vm_ready_before_jupyter_starts(own_cache):
    """`ebpf-lab course` (./lab.sh course) from a stopped VM: the backend's prepare() finds the image
    (building it if it were missing), up() boots it, and only then does Jupyter run."""
    before = cli("vm", "status", env=own_cache)
    assert before.returncode == 3, before.stdout
    course = cli("course", "--version", env=own_cache)
    assert course.returncode == 0, course.stderr
    assert "image up to date" in course.stdout and "lab VM: the embedded VM, running" in course.stdout, course.stdout
    assert cli("vm", "status", env=own_cache).returncode == 0


def test_the_image_is_made_of_what_debians_archive_resolves_today(lab):
    """`vm build` ran before the tests: its key covers today's archive, so the VM runs the kernel the archive
    offers today (a new ABI in the archive would have rebuilt the image), and the lookup is cheap."""
    from ebpf_lab.vm import image

    if lab.target.kind != "embedded":
        pytest.skip("the embedded VM's image only")
    today = image.archive_today()
    running = lab.sh("uname -r").strip()
    assert today.kernels == [f"linux-image-{running}"], (today.kernels, running)
    assert embedded.require_running().image.dir.name == f"{image.recipe_key()}-{today.digest()}"
    for package in ("python3-bpfcc", "bpftool", "clang", "libbpf-dev"):
        assert lab.sh(f"dpkg-query -W -f='${{Version}}' {package}") == today.versions[package]


def test_two_vm_ups_at_once_start_one_vm(own_cache, monkeypatch):
    ups = [subprocess.Popen([sys.executable, "-m", "ebpf_lab", "vm", "up"], env={**os.environ, **own_cache},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in ups]
    assert [p.returncode for p in ups] == [0, 0], results
    monkeypatch.setenv("EBPF_LAB_CACHE", own_cache["EBPF_LAB_CACHE"])
    control = embedded._control_dir()  # this cache's VM's sockets: on its qemu's command line
    qemus = subprocess.run(["pgrep", "-f", f"qemu-system.*{control}/"], capture_output=True, text=True).stdout.split()
    assert len(qemus) == 1, qemus


def test_the_guest_cannot_reach_the_hosts_loopback(lab):
    """Notebook code is root in the VM; it must not reach e.g. the Jupyter server on the host's 127.0.0.1."""
    if lab.target.kind != "embedded":
        pytest.skip("the embedded VM's network only")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = (f"import socket\ntry:\n    socket.create_connection(('10.0.2.2', {port}), timeout=5)\n"
                 "    print('reached')\nexcept OSError as e:\n    print('blocked', e)\n")
        out = lab.sh(f"python3 -c {shlex.quote(probe)}")
    assert out.startswith("blocked"), out
    assert lab.sh("echo ssh still works").strip() == "ssh still works"


def test_ssh_is_forwarded_on_loopback_only(lab):
    cmdline = Path(f"/proc/{embedded.require_running().pid}/cmdline").read_bytes().split(b"\0")
    netdev = next(a for a in cmdline if a.startswith(b"user,"))
    assert b"hostfwd=tcp:127.0.0.1:" in netdev


def test_vm_not_running_says_how_to_start(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text("print('hi')\n")
    r = cli("run", str(prog), env={"EBPF_LAB_CACHE": str(tmp_path), "EBPF_LAB_TARGET": "embedded"})
    assert r.returncode == 2
    assert r.stderr.strip() == "ebpf-lab: the embedded lab VM is not running — start it with: ebpf-lab vm up"


def test_missing_image_says_how_to_build(tmp_path):
    r = cli("vm", "up", env={"EBPF_LAB_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "run: ebpf-lab vm build" in r.stderr and "Traceback" not in r.stderr


def test_missing_qemu_says_what_to_install(own_cache):
    r = cli("vm", "up", env={**own_cache, "PATH": "/nonexistent"})
    assert r.returncode == 2 and "sudo apt-get install qemu-system-x86" in r.stderr


def test_port_in_use(own_cache):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli("vm", "up", env={**own_cache, "EBPF_LAB_SSH_PORT": str(port)})
    assert r.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in r.stderr


def test_ssh_refused_is_one_line_with_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    t = SshTransport(SshTarget(kind="embedded", host="127.0.0.1", port=port, user="root"))
    with pytest.raises(SshFailed) as info:
        t.run("true")
    assert "Connection refused" in str(info.value) and "ebpf-lab vm status" in str(info.value)


def test_ssh_unreachable_says_what_the_machine_keeper_knows(tmp_path, monkeypatch):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = SshTransport(SshTarget(kind="embedded", host="127.0.0.1", port=port, user="root",
                               diagnose=lambda: "qemu reports the guest io-error"))
    with pytest.raises(SshFailed, match="Connection refused; qemu reports the guest io-error"):
        t.run("true")


def test_a_paused_guest_is_diagnosed_by_vm_status(lab):
    if lab.target.kind != "embedded":
        pytest.skip("the embedded VM only")
    st = embedded.require_running()
    embedded.qmp(Path(st.qmp), "stop")  # what qemu does by itself when a write to the disk fails
    try:
        assert embedded.run_state(st) == "paused"
        r = cli("vm", "status")
        assert "not answering: qemu (pid" in r.stdout and "reports the guest paused" in r.stdout, r.stdout
        assert "sends no banner" not in r.stdout  # that hint is for a guest that runs
    finally:
        embedded.qmp(Path(st.qmp), "cont")
    assert embedded.run_state(st) == "running"
    assert lab.sh("echo back").strip() == "back"


def test_program_not_found(lab):
    r = cli("run", "/no/such/program.py")
    assert r.returncode == 2 and r.stderr.strip() == (
        "ebpf-lab: no such program: /no/such/program.py — give the path of a BCC Python file on this machine, "
        "or vm:/path for one in the lab VM")


def test_provisioning_script_is_idempotent_on_a_running_machine(lab):
    """The Vagrant path: the same script, in machine mode, on a live Debian system."""
    script = Path(__file__).resolve().parents[2] / "provision" / "lab-provision.sh"
    lab.ssh.copy_in(script.read_bytes(), "/root/lab-provision.sh")
    out = lab.sh("bash /root/lab-provision.sh 2>&1", timeout=600)
    assert "ebpf-lab: provisioned (machine)" in out
    assert lab.sh("ls -d /lib/modules/$(uname -r)/build").strip()
