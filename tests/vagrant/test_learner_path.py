"""What a learner gets from one `vagrant up`: a booted current kernel, and a lab that finds the VM.

Run by the Vagrant lane (tests/vagrant/lane.py) against the VM its `vagrant up` made from the test box.
"""
from __future__ import annotations

import subprocess

import pytest

from ebpf_lab.errors import SshFailed
from ebpf_lab.lab import Lab, connect
from ebpf_lab.vm.vagrant import VagrantVM

from ..cli import cli

from .box import built_box


def test_one_vagrant_up_boots_the_current_kernel_it_installed():
    box_kernel = (built_box() / "kernel-release").read_text().strip()
    lab = connect("vagrant")
    running = lab.sh("uname -r").strip()
    assert running != box_kernel, "the VM still runs the box's kernel: the kernel step or the reboot did not happen"
    # The box's kernel is still there and its headers still hidden, so the fallback path is what ran.
    assert lab.sh(f"dpkg-query -W -f='${{Status}}' linux-image-{box_kernel}").endswith("ok installed")
    assert "Candidate: (none)" in lab.sh(f"apt-cache policy linux-headers-{box_kernel}")
    assert lab.sh(f"test -d /lib/modules/{running}/build && echo headers").strip() == "headers"


def learner(*args: str, tmp_path) -> subprocess.CompletedProcess:
    """`ebpf-lab ARGS` as a learner runs it: no EBPF_LAB_TARGET, and no embedded image to fall back on."""
    return cli(*args, env={"EBPF_LAB_CACHE": str(tmp_path)}, unset=["EBPF_LAB_TARGET"], timeout=120)


def test_the_lab_finds_the_running_vagrant_vm_by_itself(tmp_path):
    status = learner("vm", "status", tmp_path=tmp_path)
    assert status.returncode == 0 and "vm:      vagrant, running" in status.stdout, status
    root = learner("vm", "ssh", "id", "-u", tmp_path=tmp_path)
    assert root.stdout.strip() == "0", root
    # `ebpf-lab course` (what ./lab.sh course runs) uses it too, and builds no embedded image.
    course = learner("course", "--version", tmp_path=tmp_path)
    assert course.returncode == 0 and "lab VM: this repo's Vagrant machine" in course.stdout, course
    assert not (tmp_path / "images").exists()


def test_a_vagrant_machine_whose_host_key_changed_is_refused(short_tmp, monkeypatch):
    """`vagrant ssh-config` says not to check host keys; the lab pins the key at first contact instead."""
    target = VagrantVM().target()
    option = dict(o.split("=", 1) for o in target.options)
    known_hosts, alias = option["UserKnownHostsFile"], option["HostKeyAlias"]
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))  # a fresh ssh master: no connection to reuse
    assert Lab(target).sh("echo first contact").strip() == "first contact"
    pinned = open(known_hosts).read()
    assert pinned.startswith(alias + " ")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(short_tmp / "other")], check=True)
    other = (short_tmp / "other.pub").read_text().split()[:2]
    try:
        with open(known_hosts, "w") as f:
            f.write(f"{alias} {' '.join(other)}\n")
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp / "again"))
        (short_tmp / "again").mkdir(mode=0o700)
        with pytest.raises(SshFailed, match="not the one pinned") as refused:
            Lab(target).sh("true")
        assert f"ssh-keygen -R {alias}" in refused.value.fix
    finally:
        with open(known_hosts, "w") as f:
            f.write(pinned)
