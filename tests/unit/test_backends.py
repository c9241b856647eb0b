"""The backend seam: selection by EBPF_LAB_TARGET, and a transport that knows nothing about VMs."""
import ast
from pathlib import Path

import pytest

from ebpf_lab.errors import LabError
from ebpf_lab.vm import backend
from ebpf_lab.vm.embedded import EmbeddedVM
from ebpf_lab.vm.ssh_host import SshHost
from ebpf_lab.vm.vagrant import VagrantVM

PACKAGE = Path(backend.__file__).resolve().parents[1]


def test_transport_depends_on_nothing_in_vm():
    for path in (PACKAGE / "transport").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.startswith(("..vm", "ebpf_lab.vm")), f"{path.name} imports {module}"


def test_selection_follows_ebpf_lab_target(monkeypatch):
    monkeypatch.setattr(VagrantVM, "running", lambda self: False)
    monkeypatch.delenv("EBPF_LAB_TARGET", raising=False)
    assert isinstance(backend.select_backend(), EmbeddedVM)
    monkeypatch.setattr(VagrantVM, "running", lambda self: True)
    assert isinstance(backend.select_backend(), VagrantVM)  # a running Vagrant machine of this repo wins
    monkeypatch.setenv("EBPF_LAB_TARGET", "embedded")
    assert isinstance(backend.select_backend(), EmbeddedVM)
    monkeypatch.setenv("EBPF_LAB_TARGET", "ssh://me@lab.example:2200")
    remote = backend.select_backend()
    assert isinstance(remote, SshHost) and (remote.target().user, remote.target().port) == ("me", 2200)
    assert remote.down() is False and remote.answers()
    monkeypatch.setenv("EBPF_LAB_TARGET", "lima")
    with pytest.raises(LabError, match="no lab backend named 'lima'"):
        backend.select_backend()


def test_every_registered_backend_has_the_whole_interface():
    for name, make in backend.BACKENDS.items():
        b = make()
        assert b.name == name
        for method in ("prepare", "up", "down", "answers", "status", "describe", "target"):
            assert callable(getattr(b, method)), (name, method)


def test_connect_gives_one_lab_per_machine(monkeypatch):
    import ebpf_lab

    monkeypatch.setenv("EBPF_LAB_TARGET", "ssh://me@lab.example:2200")
    assert ebpf_lab.connect() is ebpf_lab.connect()  # the notebook's lab and its %%bcc cells share it
    assert ebpf_lab.connect("ssh://me@other.example") is not ebpf_lab.connect()


def test_vagrant_machine_is_looked_for_where_vagrant_keeps_it(monkeypatch, tmp_path):
    monkeypatch.delenv("VAGRANT_DOTFILE_PATH", raising=False)
    monkeypatch.setattr("ebpf_lab.vm.vagrant.repo_dir", lambda: tmp_path)
    assert not VagrantVM()._created()
    (tmp_path / ".vagrant/machines/default/libvirt").mkdir(parents=True)
    (tmp_path / ".vagrant/machines/default/libvirt/id").write_text("x")
    assert VagrantVM()._created()
    # VAGRANT_DOTFILE_PATH moves it (the CI lane's machine lives apart from a learner's).
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(tmp_path / "lane"))
    assert not VagrantVM()._created()
    (tmp_path / "lane/machines/default/libvirt").mkdir(parents=True)
    (tmp_path / "lane/machines/default/libvirt/id").write_text("x")
    assert VagrantVM()._created()
