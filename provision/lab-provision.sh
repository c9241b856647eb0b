#!/usr/bin/env bash
# The one provisioning script of the lab.
#
#   lab-provision.sh            on a running Debian/Ubuntu machine (the Vagrant box):
#                               installs the lab packages and the headers of the running kernel.
#   lab-provision.sh --image    inside the chroot of the embedded VM's image build
#                               (ebpf_lab/vm/image.py runs it through mmdebstrap):
#                               also installs the minimal PID 1 the embedded VM boots with
#                               (lab-init.py, beside this script).
#
# Both modes create the same lab users, so every chapter sees the same machine.
# The image builder hashes this folder: any change here rebuilds the embedded image.
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
  # PID 1 of the embedded VM (provision/lab-init.py), copied in beside this script by the image build.
  install -m 755 "$(dirname "$0")/lab-init.py" /sbin/ebpf-lab-init
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
