import importlib.util
from pathlib import Path

import pytest

from ebpf_lab.errors import LabError
from ebpf_lab.runner.workload import Workload
from ebpf_lab.vm import accel, image
from ebpf_lab.vm.ssh_host import parse_ssh_url
from ebpf_lab.vm.vagrant import parse_ssh_config


def test_workload_parse():
    assert Workload.parse("alice") == Workload("alice", 10, ("/bin/true",))
    assert Workload.parse("bob:3:/usr/bin/id -u") == Workload("bob", 3, ("/usr/bin/id", "-u"))
    assert Workload.parse("alice:30@2/s") == Workload("alice", 30, ("/bin/true",), 2.0)
    assert Workload.parse("alice:4@0.5/s:/bin/cat /etc/hostname").rate == 0.5
    for bad in ("bob:many", ":3", "bob:3@0/s", "bob:3@fast"):
        with pytest.raises(LabError, match="USER"):
            Workload.parse(bad)


def test_vagrant_ssh_config_parsed():
    cfg = parse_ssh_config("""Host default
  HostName 192.168.121.5
  User vagrant
  Port 22
  IdentityFile "/home/me/repo/.vagrant/machines/default/libvirt/private_key"
  StrictHostKeyChecking no
""")
    assert cfg["hostname"] == "192.168.121.5" and cfg["user"] == "vagrant"
    assert cfg["identityfile"].endswith("private_key")


def test_ssh_url():
    t = parse_ssh_url("ssh://vagrant@10.1.2.3:2222")
    assert (t.user, t.host, t.port, t.needs_sudo) == ("vagrant", "10.1.2.3", 2222, True)
    with pytest.raises(LabError, match="ssh://user@host:port"):
        parse_ssh_url("telnet://x")
    # A host or user that looks like an option would be read by ssh as one (e.g. -oProxyCommand=...).
    for sneaky in ("ssh://-oProxyCommand=touch%20x", "ssh://-x@host", "ssh://root@-host"):
        with pytest.raises(LabError):
            parse_ssh_url(sneaky)


def test_image_key_follows_the_provisioning_files(tmp_path, monkeypatch):
    script, init = tmp_path / "lab-provision.sh", tmp_path / "lab-init.py"
    script.write_text("echo one\n")
    init.write_text("print('init')\n")
    monkeypatch.setattr(image, "provision_dir", lambda: tmp_path)
    first = image.recipe_key()
    assert image.recipe_key() == first
    script.write_text("echo two\n")
    second = image.recipe_key()
    assert second != first
    init.write_text("print('another init')\n")
    assert image.recipe_key() != second


def test_accel_override_and_missing_kvm(monkeypatch, tmp_path):
    monkeypatch.setenv("EBPF_LAB_ACCEL", "tcg")
    assert accel.choose_accel("qemu-system-x86_64", tmp_path / "k") == "tcg"
    monkeypatch.delenv("EBPF_LAB_ACCEL")
    monkeypatch.setattr(accel.os, "access", lambda *a: False)
    assert accel.choose_accel("qemu-system-x86_64", tmp_path / "k") == "tcg"


def test_accel_probe_result_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    monkeypatch.delenv("EBPF_LAB_ACCEL", raising=False)
    monkeypatch.setattr(accel.os, "access", lambda *a: True)
    monkeypatch.setattr(accel, "_host_id", lambda q: "host-1")
    probes = []
    monkeypatch.setattr(accel, "kvm_boots", lambda q, k: probes.append(1) or True)
    assert accel.choose_accel("q", tmp_path / "k") == "kvm"
    assert accel.choose_accel("q", tmp_path / "k") == "kvm"
    assert probes == [1]
    assert accel.qemu_args("kvm")[:2] == ["-accel", "kvm"]


def test_a_vm_that_kvm_cannot_bring_up_falls_back_to_tcg_for_good(monkeypatch, tmp_path):
    from ebpf_lab.errors import VMBootFailed
    from ebpf_lab.vm import embedded

    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    monkeypatch.delenv("EBPF_LAB_ACCEL", raising=False)
    monkeypatch.setattr(accel.os, "access", lambda *a: True)
    monkeypatch.setattr(accel, "_host_id", lambda q: "host-1")
    monkeypatch.setattr(accel, "kvm_boots", lambda q, k: True)  # the kernel starts, the VM never answers
    monkeypatch.setattr(embedded.shutil, "which", lambda name: "/usr/bin/qemu")
    monkeypatch.setattr(embedded, "require_image", lambda: image.Image(tmp_path))
    monkeypatch.setattr(embedded, "ensure_key", lambda: None)
    boots = []

    def boot(img, acc, log):
        boots.append(acc)
        if acc == "kvm":
            raise VMBootFailed("the VM did not answer ssh within 60 s (kvm)")
        return "booted"

    monkeypatch.setattr(embedded, "_boot", boot)
    said = []
    assert embedded.up(log=said.append) == "booted"
    assert boots == ["kvm", "tcg"] and "using software emulation (TCG) from now on" in said[0]
    assert accel.choose_accel("q", tmp_path / "k") == "tcg"

    monkeypatch.setenv("EBPF_LAB_ACCEL", "kvm")  # a choice the user made is not second-guessed
    boots.clear()
    with pytest.raises(VMBootFailed):
        embedded.up(log=said.append)
    assert boots == ["kvm"]


def test_the_embedded_vms_init_takes_the_host_key_from_the_kernel_command_line():
    spec = importlib.util.spec_from_file_location("lab_init", Path(image.__file__).resolve().parents[2] / "provision" / "lab-init.py")
    init = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(init)  # defines functions only: main() runs as PID 1
    cmdline = "console=ttyS0 root=/dev/vda rw init=/sbin/ebpf-lab-init ebpflab.key=AAAAC3Nza quiet\n"
    assert init.authorized_key(cmdline) == "ssh-ed25519 AAAAC3Nza ebpf-lab\n"
    assert init.authorized_key("console=ttyS0 quiet") is None
    assert ("bpf", "/sys/fs/bpf", "bpf") in init.MOUNTS and ("cgroup2", "/sys/fs/cgroup", "cgroup2") in init.MOUNTS
