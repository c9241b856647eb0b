"""Build the embedded VM's disk image from Debian packages, cached by its inputs.

mmdebstrap makes a minbase bookworm root, the lab's provisioning script runs in it
(the same script `vagrant up` runs), and `mkfs.ext4 -d` turns it into a disk image
without loop mounts. The kernel is copied out for direct kernel boot.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ImageBuildFailed, ImageMissing
from ..paths import cache_dir, provision_script

SUITE = "bookworm"
IMAGE_SIZE = "4G"
# Bump when the recipe below changes in a way the inputs don't show.
RECIPE_VERSION = 1


def mirror() -> str:
    return os.environ.get("EBPF_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def apt_sources() -> list[str]:
    security = os.environ.get("EBPF_LAB_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
    return [
        f"deb {mirror()} {SUITE} main",
        f"deb {mirror()} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]


def image_key() -> str:
    """Hash of everything that decides the image's content."""
    h = hashlib.sha256()
    h.update(provision_script().read_bytes())
    h.update(json.dumps([RECIPE_VERSION, SUITE, IMAGE_SIZE, apt_sources()]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "lab.img"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def host_key(self) -> str:
        return (self.dir / "ssh_host_ed25519_key.pub").read_text().split()[1]

    @property
    def meta(self) -> dict:
        return json.loads((self.dir / "meta.json").read_text())


def images_dir() -> Path:
    return cache_dir() / "images"


def find_image() -> Image | None:
    d = images_dir() / image_key()
    return Image(d) if (d / "meta.json").exists() else None


def require_image() -> Image:
    image = find_image()
    if image is None:
        raise ImageMissing("the lab VM image is not built (or its inputs changed)", "run: ebpf-lab vm build")
    return image


def build_image(force: bool = False, log: Callable[[str], None] = print) -> Image:
    """Build the image unless an image with the same inputs is cached; drop stale images."""
    existing = find_image()
    if existing and not force:
        log(f"image up to date: {existing.dir}")
        return existing
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildFailed("mmdebstrap is not installed", "run: sudo apt-get install mmdebstrap e2fsprogs")
    key = image_key()
    final = images_dir() / key
    images_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=images_dir()))
    out = str(work)
    script = provision_script()
    mode = "root" if os.geteuid() == 0 else "unshare"
    hooks = [
        f'copy-in {script} /root',
        'chroot "$1" bash /root/lab-provision.sh --image',
        'rm -f "$1"/root/lab-provision.sh',
        f'cp "$1"/boot/vmlinuz-* {out}/vmlinuz',
        f'cp "$1"/etc/ssh/ssh_host_ed25519_key.pub {out}/',
        f'ls "$1"/lib/modules > {out}/kernel-release',
        # Inside mmdebstrap's namespace the files are root-owned, so the image is right even when
        # unprivileged; a non-recursive bind hides the chroot's /proc, /sys and /dev mounts from mkfs.
        f'mkdir {out}/tree && mount --bind "$1" {out}/tree'
        f' && truncate -s {IMAGE_SIZE} {out}/lab.img && mkfs.ext4 -q -F -L labroot -d {out}/tree {out}/lab.img'
        f'; status=$?; umount {out}/tree; rmdir {out}/tree; exit $status',
    ]
    cmd = ["mmdebstrap", f"--mode={mode}", "--variant=minbase", "--format=null",
           "--include=python3,ca-certificates", SUITE, "/dev/null", *apt_sources()]
    for hook in hooks:
        cmd.append(f"--customize-hook={hook}")
    log(f"building the lab image ({key}) with mmdebstrap; this takes a few minutes")
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not (work / "lab.img").exists():
        shutil.rmtree(work, ignore_errors=True)
        raise ImageBuildFailed(f"mmdebstrap failed (exit {proc.returncode})", "read the log above; check network access to the Debian mirror")
    meta = {"key": key, "suite": SUITE, "kernel": (work / "kernel-release").read_text().strip()}
    (work / "meta.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    for stale in images_dir().iterdir():
        if stale.name != key and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    log(f"image ready: {final} (kernel {meta['kernel']})")
    return Image(final)
