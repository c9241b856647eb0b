"""The Vagrant lane (`./lab.sh test-vagrant`): the learner's `vagrant up`, run for real, then tested.

It starts libvirt if it is not running, builds the test box (tests/vagrant/box.py), registers it
under the Vagrantfile's box name in a project-local VAGRANT_HOME, runs `vagrant up --provider=libvirt`
on the project's unchanged Vagrantfile, runs the runner's transport tests, the lab comparison and chapters under
nbval against that VM, then destroys it and stops what it started.

Settings that only suit a throwaway CI machine (Vagrant's well-known key left in place, an unsafe
disk cache, TCG when KVM does not boot guests here) come from $VAGRANT_HOME/Vagrantfile, which
Vagrant merges into the project's.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ebpf_lab.paths import repo_dir
from ebpf_lab.vm import accel, image

from .. import suite
from .box import build_box

LANE_DIR = repo_dir() / ".vagrant-lane"
# qemu runs as libvirt-qemu, which may not reach into the checkout (e.g. under /root).
QEMU_WRAPPER = Path("/var/lib/libvirt/ebpf-lab-lane/qemu-tcg-single")
LIBVIRT_URI = "qemu:///system"
DOMAIN_PREFIX = "ebpf-lab-lane-"  # libvirt's name for the lane's machine starts with this, and no one else's
# vagrant-libvirt's management network, where Vagrant reaches the guest's sshd.
GUEST_NETWORK = "192.168.121.0/24"
# Silence after "Waiting for machine to reboot..." that means Vagrant hangs (a passing reboot takes ~1 min).
REBOOT_SILENCE = 180
# The runner's tests that depend on how the host reaches the machine (ssh to Vagrant's sshd, no data
# channel): streaming, clocks, interrupts, a dropped link, hostile output, records' fallback to ssh. What
# only the guest decides (limits, cgroups, compile and verifier errors, the zygote) the main lane tests on
# the same guest, and tests/vagrant/test_same_lab.py checks that it is the same: not run twice.
TRANSPORT_TESTS = [
    "test_hello_kprobe_line_arrives_while_execs_happen",
    "test_timeout_counts_from_attach_not_from_start",
    "test_cli_streams_hello_shows_compile_progress_and_returns_status",
    "test_interrupt_runs_keyboardinterrupt_cleanup",
    "test_dropped_ssh_link_unloads_the_program",
    "test_timeout_is_not_held_up_by_a_host_that_stopped_reading",
    "test_unbuffered_output_reaches_the_host_while_the_program_runs",
    "test_the_host_survives_what_the_guest_sends",
    "test_two_runs_at_once_do_not_interfere",
    "test_compile_error_points_at_cell_line",
    "test_100k_lines_and_records_are_capped_but_logged",
    "test_records_take_the_data_channel_or_fall_back_to_ssh",
]
TESTS = [*(f"tests/vm/test_runner.py::{name}" for name in TRANSPORT_TESTS), "tests/vagrant",
         "notebooks/01-kprobes.ipynb", "notebooks/02-maps.ipynb"]

# With several vCPUs qemu's TCG runs one host thread per vCPU, and a vCPU now and then keeps running
# stale code after another one patches the kernel (every BPF attach does): see ebpf_lab/vm/accel.py.
# libvirt has no setting for it, so this wrapper turns libvirt's `-accel tcg` into one host thread.
QEMU_WRAPPER_SCRIPT = """#!/bin/sh
# qemu for the ebpf-lab Vagrant lane: single-threaded TCG (written by tests/vagrant/lane.py)
prev=
for arg; do
  shift
  [ "$prev" = -accel ] && [ "$arg" = tcg ] && arg=tcg,thread=single
  set -- "$@" "$arg"
  prev=$arg
done
exec /usr/bin/qemu-system-x86_64 "$@"
"""


def log(text: str) -> None:
    print(f"test-vagrant: {text}", flush=True)


def box_name() -> str:
    m = re.search(r'config\.vm\.box\s*=\s*"([^"]+)"', (repo_dir() / "Vagrantfile").read_text())
    if not m:
        raise SystemExit("test-vagrant: no config.vm.box in the Vagrantfile")
    return m.group(1)


def lane_env() -> dict[str, str]:
    # VAGRANT_DOTFILE_PATH keeps the lane's machine apart from a learner's own `vagrant up` here.
    return dict(os.environ, VAGRANT_HOME=str(LANE_DIR / "home"), VAGRANT_DOTFILE_PATH=str(LANE_DIR / "machine"),
                EBPF_LAB_TARGET="vagrant", LIBVIRT_DEFAULT_URI=LIBVIRT_URI,
                # No calls home from CI (HashiCorp's version check, box updates from Vagrant Cloud).
                VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_BOX_UPDATE_CHECK_DISABLE="1")


def vagrant(*args: str, check: bool = True) -> int:
    log("vagrant " + " ".join(args))
    return subprocess.run(["vagrant", *args], cwd=repo_dir(), env=lane_env(), check=check).returncode


def vagrant_up() -> None:
    """`vagrant up --provider=libvirt`, watched for a hang of Vagrant 2.3's own.

    Its reboot step can go on waiting on the ssh connection it had before the guest rebooted: the
    guest is up on its new kernel and answers ssh, but Vagrant's socket stays ESTABLISHED with no
    keepalive to find out (seen in about one lane run in three). When its output has stopped for
    REBOOT_SILENCE seconds after that message, the stale connection is cut (`ss -K`); Vagrant then
    reconnects by itself and carries on with the next provisioner. A learner who meets it: Ctrl-C,
    then `vagrant provision --provision-with lab` (see the README).
    """
    proc = subprocess.Popen(["vagrant", "up", "--provider=libvirt"], cwd=repo_dir(), env=lane_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last_output, waiting_for_reboot = time.monotonic(), False

    def cut_stale_connections() -> None:
        nonlocal last_output
        while proc.poll() is None:
            time.sleep(10)
            if waiting_for_reboot and time.monotonic() - last_output > REBOOT_SILENCE:
                log(f"vagrant up has said nothing for {REBOOT_SILENCE} s since the reboot: cutting its "
                    "stale ssh connection (a Vagrant 2.3 hang, see vagrant_up)")
                subprocess.run(["ss", "-tn", "-K", "dst", GUEST_NETWORK, "dport", "=", "22"], check=False)
                last_output = time.monotonic()

    threading.Thread(target=cut_stale_connections, daemon=True).start()
    for line in proc.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
        last_output, waiting_for_reboot = time.monotonic(), b"Waiting for machine to reboot" in line
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)


def libvirt_answers() -> bool:
    return subprocess.run(["virsh", "-c", LIBVIRT_URI, "version"], capture_output=True).returncode == 0


def start_libvirt() -> list[str]:
    """Start libvirt's daemons unless they run; returns the pid files of what was started."""
    if libvirt_answers():
        return []
    log("starting libvirtd and virtlogd")
    Path("/run/libvirt").mkdir(parents=True, exist_ok=True)
    started = []
    for daemon in ("virtlogd", "libvirtd"):
        subprocess.run([daemon, "-d"], check=True)
        started.append(f"/run/{daemon}.pid")
    deadline = time.monotonic() + 60
    while not libvirt_answers():
        if time.monotonic() > deadline:
            raise SystemExit("test-vagrant: libvirtd did not answer within 60 s")
        time.sleep(0.5)
    return started


def stop_libvirt(pidfiles: list[str]) -> None:
    if not pidfiles:
        return
    # The networks vagrant-libvirt made run dnsmasq processes of their own.
    nets = subprocess.run(["virsh", "-c", LIBVIRT_URI, "net-list", "--name"], capture_output=True, text=True).stdout
    for net in nets.split():
        subprocess.run(["virsh", "-c", LIBVIRT_URI, "net-destroy", net], capture_output=True)
    for pidfile in reversed(pidfiles):
        try:
            os.kill(int(Path(pidfile).read_text()), 15)
        except (OSError, ValueError):
            pass
    log("stopped libvirtd and virtlogd")


def pool_volumes() -> set[str]:
    listing = subprocess.run(["virsh", "-c", LIBVIRT_URI, "vol-list", "default"], capture_output=True, text=True)
    return {line.split()[0] for line in listing.stdout.splitlines()[2:] if line.strip()}


def remove_box_copies(volumes_before: set[str]) -> None:
    """The box's copies outside the cache: Vagrant's unpacked box and the base volume vagrant-libvirt
    uploaded to libvirt's pool (~800 MB each, one more per lane otherwise). Only volumes this lane
    made: another machine on this host may be built on a box of the same name."""
    vagrant("box", "remove", "--force", "--all", box_name(), check=False)
    prefix = box_name().replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    for volume in pool_volumes() - volumes_before:
        if volume.startswith(prefix):
            subprocess.run(["virsh", "-c", LIBVIRT_URI, "vol-delete", "--pool", "default", volume], check=False,
                           capture_output=True)


def remove_stale_domains() -> None:
    """Machines a killed lane left in libvirt. Vagrant's record of them may be gone with that lane's
    checkout (CI clones afresh), and `vagrant up` refuses a name that is taken."""
    names = subprocess.run(["virsh", "-c", LIBVIRT_URI, "list", "--all", "--name"], capture_output=True,
                           text=True).stdout.split()
    for name in names:
        if name.startswith(DOMAIN_PREFIX):
            log(f"removing {name}, left in libvirt by an earlier lane")
            subprocess.run(["virsh", "-c", LIBVIRT_URI, "destroy", name], capture_output=True)
            subprocess.run(["virsh", "-c", LIBVIRT_URI, "undefine", name, "--remove-all-storage"], capture_output=True,
                           check=True)


def write_home_vagrantfile(use_tcg: bool) -> None:
    home = LANE_DIR / "home"
    home.mkdir(parents=True, exist_ok=True)
    tcg = ""
    if use_tcg:
        QEMU_WRAPPER.parent.mkdir(parents=True, exist_ok=True)
        QEMU_WRAPPER.write_text(QEMU_WRAPPER_SCRIPT)
        QEMU_WRAPPER.chmod(0o755)
        tcg = f'    lv.driver = "qemu"\n    lv.emulator_path = "{QEMU_WRAPPER}"\n'
    (home / "Vagrantfile").write_text(
        "# Written by tests/vagrant/lane.py for the Vagrant lane only; Vagrant merges it into the project's.\n"
        'Vagrant.configure("2") do |config|\n'
        "  config.ssh.insert_key = false\n"
        '  config.vm.provider "libvirt" do |lv|\n'
        f"{tcg}"
        '    lv.disk_driver :cache => "unsafe"\n'
        f'    lv.default_prefix = "{DOMAIN_PREFIX}"\n'
        "  end\n"
        "end\n")


def kvm_boots_guests() -> bool:
    return accel.choose_accel("qemu-system-x86_64", image.require_image().kernel) == "kvm"


def run_tests(extra: list[str]) -> int:
    log("pytest " + " ".join([*TESTS, *extra]))
    return suite.run([*TESTS, *extra], env=lane_env())


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        raise SystemExit("test-vagrant: needs root (it builds a disk image and runs libvirt): run it with sudo")
    started = start_libvirt()
    volumes_before = pool_volumes()
    t0 = time.monotonic()
    try:
        box = build_box(log=log)
        write_home_vagrantfile(use_tcg=not kvm_boots_guests())
        if (LANE_DIR / "machine").exists():
            vagrant("destroy", "-f")  # a lane that was killed left its VM: every lane starts from the box
        remove_stale_domains()
        vagrant("box", "add", "--force", "--name", box_name(), str(box))
        vagrant_up()
        log(f"vagrant up finished {time.monotonic() - t0:.0f} s into the lane")
        return run_tests(argv)
    except subprocess.CalledProcessError as e:
        log(f"{' '.join(map(str, e.cmd))} failed (exit {e.returncode}); its output is above")
        return 1
    finally:
        if (LANE_DIR / "machine").exists():
            vagrant("destroy", "-f", check=False)
        remove_box_copies(volumes_before)
        stop_libvirt(started)
        shutil.rmtree(QEMU_WRAPPER.parent, ignore_errors=True)
        log(f"done in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
