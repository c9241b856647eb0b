"""The Vagrant VM and the embedded VM are the same lab for every chapter.

Run by the Vagrant lane (tests/vagrant/lane.py) while `vagrant up` is running; it boots the embedded
VM beside it for the comparison. The two kernels differ in flavour (Debian's cloud kernel in the
embedded image, the generic one in a Vagrant box), so what is compared is what the chapters use.
"""
from __future__ import annotations

import json

import pytest

from ebpf_lab.lab import Lab, connect
from ebpf_lab.vm.backend import select_backend

# Kernel options the chapters rely on: kprobes and tracepoints, maps and buffers, BTF, XDP on a
# dummy device, cgroups for the runner. "m" and "y" both count as present.
KERNEL_OPTIONS = ["BPF_SYSCALL", "BPF_JIT", "KPROBES", "KPROBE_EVENTS", "UPROBE_EVENTS", "BPF_EVENTS",
                  "FTRACE_SYSCALLS", "DEBUG_INFO_BTF", "CGROUP_BPF", "BPF_STREAM_PARSER", "NET_CLS_BPF",
                  "NET_ACT_BPF", "XDP_SOCKETS", "DUMMY", "VETH", "NET_SCH_INGRESS"]

PROBE = r"""
import json, os, platform, pwd, re, subprocess

def out(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

def first_version(text):
    m = re.search(r"(\d+\.\d+(\.\d+)?)", text)
    return m.group(1) if m else None

release = platform.release()
mounts = {}
for line in open("/proc/mounts"):
    _, path, fstype = line.split()[:3]
    mounts[path] = fstype
config = {}
for line in open(f"/boot/config-{release}"):
    m = re.match(r"CONFIG_(\w+)=(.*)", line)
    if m:
        config[m.group(1)] = m.group(2)
print(json.dumps({
    "distribution": out(". /etc/os-release && echo $ID $VERSION_ID"),
    "kernel": ".".join(release.split(".")[:2]),
    "bcc": out("python3 -c 'import bcc; print(bcc.__version__)'"),
    "bpftool": first_version(out("bpftool version")),
    "clang": first_version(out("clang --version")),
    "libbpf": out("dpkg-query -W -f='${Version}' libbpf-dev"),
    "python": ".".join(platform.python_version_tuple()[:2]),
    "users": {name: pwd.getpwnam(name).pw_uid for name in ("alice", "bob")},
    "mounts": {path: mounts.get(path) for path in ("/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/debug",
                                                   "/sys/fs/cgroup")},
    "headers_for_running_kernel": os.path.isdir(f"/lib/modules/{release}/build"),
    "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
    "jit_enabled": open("/proc/sys/net/core/bpf_jit_enable").read().strip(),
    "options": {opt: config.get(opt) in ("y", "m") for opt in OPTIONS},
}))
"""


def lab_facts(lab: Lab) -> dict:
    script = f"OPTIONS = {KERNEL_OPTIONS!r}\n{PROBE}"
    return json.loads(lab.sh("python3 -", input=script.encode()))


@pytest.fixture(scope="module")
def facts():
    vagrant = select_backend("vagrant")
    assert vagrant.running(), "the Vagrant lane runs this test while `vagrant up` is running"
    embedded = select_backend("embedded")
    was_running = embedded.answers()
    embedded.up()
    try:
        yield {"vagrant": lab_facts(connect("vagrant")), "embedded": lab_facts(connect("embedded"))}
    finally:
        if not was_running:
            embedded.down()


@pytest.mark.parametrize("fact", ["distribution", "kernel", "bcc", "bpftool", "clang", "libbpf", "python"])
def test_same_versions(facts, fact):
    assert facts["vagrant"][fact] == facts["embedded"][fact]
    assert facts["vagrant"][fact], f"{fact} not found in the lab"


def test_same_lab_users(facts):
    assert facts["vagrant"]["users"] == facts["embedded"]["users"] == {"alice": 1001, "bob": 1002}


def test_same_filesystems_mounted(facts):
    assert facts["vagrant"]["mounts"] == facts["embedded"]["mounts"] == {
        "/sys/fs/bpf": "bpf", "/sys/kernel/tracing": "tracefs", "/sys/kernel/debug": "debugfs",
        "/sys/fs/cgroup": "cgroup2"}


def test_same_kernel_features(facts):
    for lab in ("vagrant", "embedded"):
        assert facts[lab]["headers_for_running_kernel"], f"{lab}: bcc needs the running kernel's headers"
        assert facts[lab]["btf"], f"{lab}: no /sys/kernel/btf/vmlinux"
        assert facts[lab]["jit_enabled"] == "1", f"{lab}: the JIT is off, chapter 5 shows JIT code"
    missing = {lab: [opt for opt, on in facts[lab]["options"].items() if not on] for lab in ("vagrant", "embedded")}
    assert missing == {"vagrant": [], "embedded": []}
