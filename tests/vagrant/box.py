"""A Vagrant box like the one learners download (debian/bookworm64), built here from Debian packages.

Public boxes cannot be downloaded on CI machines, so the Vagrant lane builds its own. The box is made
to exercise the path an aged box takes: its kernel is the oldest one still in the archive and its apt
hides that kernel's headers (an apt pin), so provision/lab-provision.sh must install a current kernel
and `vagrant up` must reboot into it. For that reboot to mean something the box is a real bootable
disk: GPT, an EFI system partition holding a standalone GRUB that boots /vmlinuz (the symlink Debian
moves to the newest kernel it installs) and an ext4 root, booted by OVMF. No loop devices: sfdisk
on a file, `mkfs.ext4 -E offset= -d`, the ESP written with mtools.

Cached under ~/.cache/ebpf-lab/boxes/<key>; the key hashes this file, the apt sources and what Debian's
archive resolves today for the box's packages and kernels (as the embedded image's key does), so a new
kernel ABI in the archive rebuilds the box the day it appears.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Callable

from ebpf_lab.paths import cache_dir
from ebpf_lab.vm.archive import Resolution, resolve
from ebpf_lab.vm.image import apt_sources, remove_tree

SUITE = "bookworm"
DISK_GIB = 10
ESP_MIB = 64
OVMF = "/usr/share/ovmf/OVMF.fd"
# What a Debian cloud/vagrant box has, minus what it doesn't need here.
PACKAGES = ["systemd-sysv", "udev", "dbus", "ifupdown", "isc-dhcp-client", "iproute2", "openssh-server",
            "sudo", "initramfs-tools", "linux-base", "ca-certificates"]
# Vagrant's well-known key pair: boxes carry the public half, Vagrant logs in with the private one.
VAGRANT_KEYS = Path("/usr/share/rubygems-integration/all/gems")

# The kernels an aged box can be given: every ABI the archive names.
KERNEL_ABIS = r"^linux-image-[0-9.]+-[0-9]+-amd64$"
# Runs in mmdebstrap's customize phase ($1 = the root). Picks the archive's oldest kernel ABI (an
# "aged" box) and hides its headers, after checking a newer kernel exists for the fallback to take.
AGED_KERNEL_HOOK = r"""
set -e
old=$(chroot "$1" apt-cache search --names-only "$KERNEL_ABIS" | cut -d' ' -f1 | sort -V | head -n1)
new=$(chroot "$1" apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2}')
if [ -z "$old" ] || [ "$old" = "$new" ]; then
  echo "box: the archive has one kernel ABI only ($new); an aged box cannot be made today" >&2; exit 1
fi
printf 'do_symlinks = yes\nlink_in_boot = no\n' > "$1"/etc/kernel-img.conf
chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$old"
release=${old#linux-image-}
printf 'Package: linux-headers-%s\nPin: version *\nPin-Priority: -1\n' "$release" \
  > "$1"/etc/apt/preferences.d/aged-box-kernel-headers
echo "$release" > "$OUT"/kernel-release
# Like a minimal cloud image: initramfs with the modules this machine uses (the first one, built in
# the chroot, has most of them), no documentation unpacked. Both make installs in the VM faster.
echo MODULES=dep > "$1"/etc/initramfs-tools/conf.d/modules-dep
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' > "$1"/etc/dpkg/dpkg.cfg.d/minimal-image
"""

BOX_VAGRANTFILE = f"""\
# Boots the disk's EFI system partition with OVMF, as a UEFI cloud image would.
Vagrant.configure("2") do |config|
  config.vm.provider "libvirt" do |lv|
    lv.loader = "{OVMF}"
  end
end
"""


def archive_today() -> Resolution:
    """The box's packages, the current kernel the provisioning moves to, and the ABIs it picks from."""
    return resolve([*PACKAGES, "linux-image-amd64"], apt_sources(), "amd64", also_named=KERNEL_ABIS)


def recipe_key() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps([SUITE, apt_sources()]).encode())
    return h.hexdigest()[:16]


def built_box() -> Path:
    """The directory of the box built last (only one is kept)."""
    return next(d for d in boxes_dir().glob(f"{recipe_key()}-*") if (d / "box.box").exists())


def boxes_dir() -> Path:
    return cache_dir() / "boxes"


def build_box(log: Callable[[str], None] = print) -> Path:
    """The box file for this recipe and today's archive, built unless cached; older builds are removed."""
    today = archive_today()
    final = boxes_dir() / f"{recipe_key()}-{today.digest()}"
    boxes_dir().mkdir(parents=True, exist_ok=True)
    with open(boxes_dir() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "box.box").exists():
            log(f"box up to date: {final}")
            return final / "box.box"
        log(_why_build(today))
        for stale in boxes_dir().iterdir():
            if stale.name != ".build.lock":
                remove_tree(stale)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=boxes_dir()))
        try:
            _build(work, log)
            (work / "archive.json").write_text(json.dumps(dict(today.versions), indent=1))
            work.rename(final)
        except BaseException:
            remove_tree(work)
            raise
    log(f"box ready: {final / 'box.box'}")
    return final / "box.box"


def _why_build(today: Resolution) -> str:
    for older in boxes_dir().glob(f"{recipe_key()}-*/archive.json"):
        return f"rebuilding the box: Debian's archive moved on: {today.changes_since(json.loads(older.read_text()))}"
    if any(not d.name.startswith(".") for d in boxes_dir().iterdir()):
        return "rebuilding the box: its recipe changed"
    return "building the box (none built yet)"


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def _build(work: Path, log: Callable[[str], None]) -> None:
    root_uuid = str(uuid.uuid4())
    public_key = next(VAGRANT_KEYS.glob("vagrant-*/keys/vagrant.pub"), None)
    if public_key is None:
        raise SystemExit("box: Vagrant's insecure public key not found (is Debian's vagrant package installed?)")
    tree = work / "tree"
    tree.mkdir()
    hooks = [
        AGED_KERNEL_HOOK,
        f"""set -e
printf 'auto lo\\niface lo inet loopback\\nauto eth0\\niface eth0 inet dhcp\\n' > "$1"/etc/network/interfaces
echo 'UUID={root_uuid} / ext4 errors=remount-ro 0 1' > "$1"/etc/fstab
echo debian > "$1"/etc/hostname
chroot "$1" useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o 1000 -g 1000 "$1"/home/vagrant/.ssh
install -m 600 -o 1000 -g 1000 {public_key} "$1"/home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$1"/etc/sudoers.d/vagrant
echo 'UseDNS no' > "$1"/etc/ssh/sshd_config.d/vagrant.conf
chroot "$1" apt-get clean
""",
        # A non-recursive bind hides the chroot's /proc, /sys and /dev mounts from mkfs.
        f'mount --bind "$1" {tree}',
    ]
    cmd = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=null", f"--include={','.join(PACKAGES)}",
           SUITE, "/dev/null", *apt_sources()]
    cmd += [f"--customize-hook={hook}" for hook in hooks]
    # The disk is written while the tree is still mounted, from inside the last hook.
    cmd.append(f"--customize-hook={sys.executable} {Path(__file__).resolve()} --make-disk {work} {root_uuid}"
               f"; status=$?; umount {tree}; exit $status")
    log("building the Vagrant test box with mmdebstrap")
    env = dict(os.environ, OUT=str(work), TMPDIR=str(work), KERNEL_ABIS=KERNEL_ABIS, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    _run(*cmd, env=env, stdout=sys.stderr)
    raw = work / "disk.raw"
    _run("qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img"))
    raw.unlink()
    (work / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2",
                                                    "virtual_size": DISK_GIB}))
    (work / "Vagrantfile").write_text(BOX_VAGRANTFILE)
    with tarfile.open(work / "box.box", "w") as box:
        for name in ("metadata.json", "Vagrantfile", "box.img"):
            box.add(work / name, arcname=name)
    (work / "box.img").unlink()
    tree.rmdir()


def make_disk(work: Path, root_uuid: str) -> None:
    """GPT disk image: ESP with a standalone GRUB, then the ext4 root made from work/tree."""
    raw = work / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(DISK_GIB << 30)
    _run("sfdisk", "--quiet", str(raw), input=f"label: gpt\nstart=1MiB, size={ESP_MIB}MiB, type=U\n"
                                                f"start={1 + ESP_MIB}MiB, type=L\n", text=True)
    parts = json.loads(_run("sfdisk", "--json", str(raw), capture_output=True, text=True).stdout)
    root = parts["partitiontable"]["partitions"][1]
    sector = parts["partitiontable"].get("sectorsize", 512)
    _run("mkfs.ext4", "-q", "-F", "-L", "boxroot", "-U", root_uuid, "-E", f"offset={root['start'] * sector}",
         "-d", str(work / "tree"), str(raw), f"{root['size'] * sector // 1024}k")

    grub_cfg = work / "grub.cfg"
    grub_cfg.write_text(
        "insmod part_gpt\ninsmod ext2\nset timeout=0\n"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        f"linux /vmlinuz root=UUID={root_uuid} ro console=ttyS0 net.ifnames=0\n"
        "initrd /initrd.img\nboot\n")
    efi = work / "BOOTX64.EFI"
    _run("grub-mkstandalone", "-O", "x86_64-efi", "-o", str(efi), f"boot/grub/grub.cfg={grub_cfg}")
    esp = work / "esp.img"
    with open(esp, "wb") as f:
        f.truncate(ESP_MIB << 20)
    _run("mformat", "-i", str(esp), "-F", "::")
    _run("mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT")
    _run("mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTX64.EFI")
    with open(esp, "rb") as src, open(raw, "r+b") as dst:
        dst.seek(1 << 20)
        shutil.copyfileobj(src, dst)
    for name in (esp, efi, grub_cfg):
        name.unlink()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-disk"]:
        make_disk(Path(sys.argv[2]), sys.argv[3])
    else:
        print(build_box())
