#!/usr/bin/env bash
# Quick start for a Debian 12 machine (see README):
#   ./lab.sh course        install what is missing, boot the lab VM (this repo's Vagrant machine if it
#                          runs, else the embedded VM, built first), open the course in Jupyter Lab
#   ./lab.sh test          install what is missing, build + boot the embedded VM, run every test, stop the VM
#   ./lab.sh test-vagrant  the learner's `vagrant up` on a locally built box (libvirt), then the runner
#                          tests and chapters against it; destroys the VM and stops what it started
# Everything it downloads is cached: apt packages once, the venv in .venv, the VM image under
# ~/.cache/ebpf-lab (rebuilt when provision/ or the recipe changes, or when Debian's archive moves on).
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(qemu-system-x86 mmdebstrap e2fsprogs openssh-client python3-venv python3-pip ca-certificates chromium chromium-driver)
# The Vagrant lane: Vagrant with libvirt, and what tests/vagrant/box.py makes a UEFI disk with.
VAGRANT_APT_PACKAGES=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-utils dnsmasq-base iptables
                      ovmf grub-efi-amd64-bin mtools fdisk)

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed" ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "lab.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_python() {
  local stamp
  stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  if [[ ! -e $stamp ]]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[course,test]'
    touch "$stamp"
  fi
}

prepare() {
  install_apt
  install_python
  .venv/bin/ebpf-lab vm build
  .venv/bin/ebpf-lab vm up
}

case "${1:-}" in
  course)
    install_apt
    install_python
    exec .venv/bin/ebpf-lab course "${@:2}"
    ;;
  test)
    prepare
    status=0
    # Unit and VM tests, then every notebook top to bottom against the VM (nbval).
    .venv/bin/python -m tests.suite tests notebooks --ignore=tests/vagrant "${@:2}" || status=$?
    # A failed run says what state the VM was left in (qemu's view, the guest's last console lines).
    [[ $status == 0 ]] || .venv/bin/ebpf-lab vm status || true
    .venv/bin/ebpf-lab vm down || true
    exit "$status"
    ;;
  test-vagrant)
    install_apt "${VAGRANT_APT_PACKAGES[@]}"
    install_python
    .venv/bin/ebpf-lab vm build  # the lane compares the Vagrant VM with the embedded one
    exec .venv/bin/python -m tests.vagrant.lane "${@:2}"
    ;;
  *)
    echo "usage: ./lab.sh course [jupyter args] | test [pytest args] | test-vagrant [pytest args]" >&2
    exit 2
    ;;
esac
