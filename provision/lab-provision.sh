#!/usr/bin/env bash
# The one provisioning script of the lab.
#
#   lab-provision.sh --kernel   on a running Debian/Ubuntu machine (the Vagrant box), before a reboot:
#                               if the archive no longer has headers for the running kernel (an aged
#                               box), installs the current kernel with its headers, to be booted next.
#   lab-provision.sh            on that machine after the reboot: installs the lab packages and the
#                               headers of the running kernel.
#   lab-provision.sh --image    inside the chroot of the embedded VM's image build
#                               (ebpf_lab/vm/image.py runs it through mmdebstrap):
#                               also installs the minimal PID 1 the embedded VM boots with
#                               (lab-init.py, beside this script).
#   lab-provision.sh --image-packages
#                               prints what --image installs, one name a line: the image builder asks
#                               Debian's archive for their versions, which are part of its cache key.
#
# Both modes create the same lab users, so every chapter sees the same machine.
# The image builder hashes this folder: any change here rebuilds the embedded image.
set -euo pipefail

LAB_PACKAGES=(
  python3-bpfcc bpfcc-tools bpftool
  clang llvm libbpf-dev
  openssh-server iproute2 procps kmod
  strace
)
# The embedded VM's kernel: the cloud flavour has NVMe and ext4 built in, so it boots without an initrd.
IMAGE_KERNEL_PACKAGES=(linux-image-cloud-amd64 linux-headers-cloud-amd64 initramfs-tools)
# Two unprivileged users with fixed UIDs, so per-UID labs give the same numbers everywhere.
LAB_USERS=("alice:1001" "bob:1002")

case "${1:-}" in
  --image) mode=image ;;
  --kernel) mode=kernel ;;
  --image-packages) printf '%s\n' "${LAB_PACKAGES[@]}" "${IMAGE_KERNEL_PACKAGES[@]}"; exit 0 ;;
  *) mode=machine ;;
esac
export DEBIAN_FRONTEND=noninteractive
# Emulated disks make dpkg's fsyncs the slowest part of provisioning; a machine that crashes mid-way
# is provisioned again anyway.
APT_INSTALL=(apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io)

all_installed() {
  local p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed" ]] || return 1
  done
}

has_candidate() {
  local candidate
  candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $candidate && $candidate != "(none)" ]]
}

# BCC compiles against the headers of the *running* kernel; a box whose kernel left the archive has none.
running_kernel_has_headers() {
  all_installed "linux-headers-$(uname -r)" || has_candidate "linux-headers-$(uname -r)"
}

install_kernel_with_headers() {
  if all_installed "linux-headers-$(uname -r)"; then
    return
  fi
  apt-get update -qq
  if running_kernel_has_headers; then
    echo "ebpf-lab: kernel $(uname -r) has headers in the archive; keeping it"
    return
  fi
  local flavour
  flavour=$(dpkg --print-architecture)  # Debian: linux-image-amd64, Ubuntu: linux-image-generic
  has_candidate "linux-image-$flavour" || flavour=generic
  echo "ebpf-lab: the archive has no headers for kernel $(uname -r); installing the current" \
       "kernel (linux-image-$flavour) and its headers, booted at the next step"
  "${APT_INSTALL[@]}" "linux-image-$flavour" "linux-headers-$flavour"
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
    if ! running_kernel_has_headers; then
      echo "ebpf-lab: the archive has no headers for the running kernel $(uname -r)." \
           "Run: vagrant provision (its first step installs a current kernel and reboots into it)" >&2
      exit 1
    fi
    pkgs+=("linux-headers-$(uname -r)")
    if ! apt-cache show bpftool >/dev/null 2>&1; then
      # Ubuntu ships bpftool with the kernel tools.
      pkgs=("${pkgs[@]/bpftool/}" linux-tools-common "linux-tools-$(uname -r)")
    fi
  else
    pkgs+=("${IMAGE_KERNEL_PACKAGES[@]}")
  fi
  "${APT_INSTALL[@]}" "${pkgs[@]}"
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
if [[ $mode == kernel ]]; then
  install_kernel_with_headers
  exit 0
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
