#!/usr/bin/env bash
# The one provisioning script of the lab.
#
#   lab-provision.sh            on a running Debian/Ubuntu machine (the Vagrant box):
#                               installs the lab packages and the headers of the running kernel.
#   lab-provision.sh --image    inside the chroot of the embedded VM's image build
#                               (ebpf_lab/vm/image.py runs it through mmdebstrap):
#                               also installs the minimal PID 1 the embedded VM boots with.
#
# Both modes create the same lab users, so every chapter sees the same machine.
# The image builder hashes this file: any change here rebuilds the embedded image.
set -euo pipefail

LAB_PACKAGES=(
  python3-bpfcc bpfcc-tools bpftool
  clang llvm libbpf-dev
  openssh-server iproute2 procps kmod
)
# The embedded VM's kernel: the cloud flavour has NVMe and ext4 built in, so it boots without an initrd.
IMAGE_KERNEL_PACKAGES=(linux-image-cloud-amd64 linux-headers-cloud-amd64 initramfs-tools)
# Two unprivileged users with fixed UIDs, so per-UID labs give the same numbers everywhere.
LAB_USERS=("alice:1001" "bob:1002")

mode=machine
[[ "${1:-}" == "--image" ]] && mode=image
export DEBIAN_FRONTEND=noninteractive

all_installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || return 1
  done
}

install_packages() {
  local pkgs=("${LAB_PACKAGES[@]}")
  if [[ $mode == machine ]] && all_installed "${pkgs[@]}" "linux-headers-$(uname -r)"; then
    # Re-provisioning a ready machine needs no network (the embedded VM has none).
    echo "ebpf-lab: lab packages already installed"
    return
  fi
  apt-get update -qq
  if [[ $mode == machine ]]; then
    # BCC compiles against the headers of the *running* kernel.
    if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
      pkgs+=("linux-headers-$(uname -r)")
    else
      # An older box whose kernel left the archive: install the current kernel and its headers.
      echo "ebpf-lab: no headers for kernel $(uname -r); installing the current kernel. Afterwards run: vagrant reload" >&2
      pkgs+=(linux-image-amd64 linux-headers-amd64)
    fi
    if ! apt-cache show bpftool >/dev/null 2>&1; then
      # Ubuntu ships bpftool with the kernel tools.
      pkgs=("${pkgs[@]/bpftool/}" linux-tools-common "linux-tools-$(uname -r)")
    fi
  else
    pkgs+=("${IMAGE_KERNEL_PACKAGES[@]}")
  fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
}

create_users() {
  local entry name uid
  for entry in "${LAB_USERS[@]}"; do
    name=${entry%%:*} uid=${entry##*:}
    id -u "$name" >/dev/null 2>&1 || useradd --create-home --uid "$uid" --user-group --shell /bin/bash "$name"
  done
}

configure_sshd() {
  # Keys only: the embedded VM gets its authorized key from the kernel command line at boot.
  mkdir -p /etc/ssh/sshd_config.d
  cat > /etc/ssh/sshd_config.d/ebpf-lab.conf <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
# A host that vanished (a crashed notebook kernel, a dropped network) is noticed within ~15 s,
# so its run's supervisor stops the program and the BPF programs are unloaded.
ClientAliveInterval 5
ClientAliveCountMax 3
EOF
}

install_image_init() {
  # A tiny PID 1 instead of systemd: first ssh in ~6 s under software emulation instead of ~18 s.
  cat > /sbin/ebpf-lab-init <<'EOF'
#!/usr/bin/python3
"""PID 1 of the embedded ebpf-lab VM: mount, network, sshd, reap orphans."""
import os, signal, subprocess, sys, time

# The kernel starts init with no PATH.
os.environ["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"

def sh(*cmd):
    # A failed step must not kill PID 1 (that panics the kernel): report it and go on.
    try:
        subprocess.run(cmd, check=False)
    except OSError as e:
        print(f"ebpf-lab-init: {cmd[0]}: {e}", file=sys.stderr)

MOUNTS = [
    ("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs"),
    ("devpts", "/dev/pts", "devpts"), ("tmpfs", "/dev/shm", "tmpfs"), ("tmpfs", "/run", "tmpfs"),
    ("tmpfs", "/tmp", "tmpfs"), ("debugfs", "/sys/kernel/debug", "debugfs"),
    ("tracefs", "/sys/kernel/tracing", "tracefs"), ("bpf", "/sys/fs/bpf", "bpf"),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
]
for src, target, fstype in MOUNTS:
    os.makedirs(target, exist_ok=True)
    sh("mount", "-t", fstype, src, target)
os.chmod("/tmp", 0o1777)
sh("hostname", "ebpf-lab")
# No udev: virtio_pci must be loaded before virtio_net can find the NIC.
sh("modprobe", "virtio_pci")
sh("modprobe", "virtio_net")
sh("ip", "link", "set", "lo", "up")
sh("ip", "addr", "add", "10.0.2.15/24", "dev", "eth0")
sh("ip", "link", "set", "eth0", "up")
sh("ip", "route", "add", "default", "via", "10.0.2.2")
with open("/run/resolv.conf", "w") as f:
    f.write("nameserver 10.0.2.3\n")
args = dict(a.split("=", 1) for a in open("/proc/cmdline").read().split() if "=" in a)
if "ebpflab.key" in args:
    os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
    with open("/root/.ssh/authorized_keys", "w") as f:
        f.write("ssh-ed25519 " + args["ebpflab.key"] + " ebpf-lab\n")
    os.chmod("/root/.ssh/authorized_keys", 0o600)
os.makedirs("/run/sshd", exist_ok=True)
sh("/usr/sbin/sshd", "-E", "/run/sshd.log")
with open("/dev/kmsg", "w") as f:
    f.write("ebpf-lab: ready\n")

signal.signal(signal.SIGTERM, lambda *_: (os.sync(), os.reboot(os.RB_POWER_OFF)))
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(1)
EOF
  chmod 755 /sbin/ebpf-lab-init
  ln -sf /run/resolv.conf /etc/resolv.conf
  echo ebpf-lab > /etc/hostname
  ssh-keygen -A
  apt-get clean
  rm -rf /var/lib/apt/lists/*
}

if [[ $mode == image ]]; then
  # Nothing may start in the build chroot.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
install_packages
create_users
configure_sshd
if [[ $mode == image ]]; then
  install_image_init
else
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  systemctl reload ssh 2>/dev/null || true
fi
echo "ebpf-lab: provisioned ($mode): kernel $(ls /lib/modules | tail -n1), $(bpftool version 2>/dev/null | head -n1)"
