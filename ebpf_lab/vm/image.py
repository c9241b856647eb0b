"""Build the embedded VM's disk image from Debian packages, cached by its inputs.

mmdebstrap makes a minbase bookworm root, the lab's provisioning script runs in it
(the same script `vagrant up` runs), and `mkfs.ext4 -d` turns it into a disk image
without loop mounts. The kernel is copied out for direct kernel boot.

An image's key has two halves: the recipe (this folder's provisioning files and the settings
below) and what Debian's archive resolves today for the image's packages (`archive.py`). A new
kernel ABI or a bcc update in the archive makes a new key, so every machine rebuilds the day
it appears instead of testing an image a fresh machine can no longer build.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ImageBuildFailed, ImageMissing
from ..paths import cache_dir, provision_dir
from .archive import ArchiveUnreachable, Resolution, resolve

SUITE = "bookworm"
ARCH = "amd64"
IMAGE_SIZE = "4G"
# What mmdebstrap installs before the provisioning script runs.
BASE_PACKAGES = ["python3", "ca-certificates"]
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


def recipe_key() -> str:
    """Hash of everything in this repository that decides the image's content."""
    h = hashlib.sha256()
    for path in sorted(provision_dir().iterdir()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    h.update(json.dumps([RECIPE_VERSION, SUITE, ARCH, IMAGE_SIZE, BASE_PACKAGES, apt_sources()]).encode())
    return h.hexdigest()[:16]


def image_packages() -> list[str]:
    """The packages the image is made of, as the provisioning script names them."""
    script = provision_dir() / "lab-provision.sh"
    listed = subprocess.run(["bash", str(script), "--image-packages"], capture_output=True, text=True, check=True)
    return BASE_PACKAGES + listed.stdout.split()


def archive_today() -> Resolution:
    """What the image would be made of if it were built now."""
    return resolve(image_packages(), apt_sources(), ARCH)


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
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            return {}

    def describe(self) -> str:
        meta = self.meta
        return f"kernel {meta.get('kernel', '?')}, built {meta.get('built', 'at an unknown date')}"


def images_dir() -> Path:
    return cache_dir() / "images"


def find_image() -> Image | None:
    """The newest built image of this recipe (whatever the archive holds today: no network here)."""
    built = [Image(d) for d in images_dir().glob(f"{recipe_key()}-*") if (d / "meta.json").exists()]
    return max(built, key=lambda image: image.meta.get("built", ""), default=None)


def require_image() -> Image:
    image = find_image()
    if image is None:
        raise ImageMissing("the lab VM image is not built (or its inputs changed)", "run: ebpf-lab vm build")
    return image


def _why_build(current: Image | None, today: Resolution, force: bool) -> str:
    if force:
        return "rebuilding the lab image (--force)"
    if current is not None:
        return (f"rebuilding the lab image: Debian's archive moved on since the image of {current.meta.get('built')}: "
                f"{today.changes_since(current.meta.get('archive', {}))}")
    if any(not d.name.startswith(".") for d in images_dir().iterdir()):
        return "rebuilding the lab image: provision/ or the image recipe changed since the last build"
    return "building the lab image (none built yet)"


def build_image(force: bool = False, log: Callable[[str], None] = print) -> Image:
    """Build the image unless one with the same recipe and today's packages is cached; drop stale images.

    When Debian's archive cannot be asked (offline), an image of the same recipe is used as it is."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the second finds the first one's image
        current = find_image()
        try:
            today = archive_today()
        except ArchiveUnreachable as e:
            if current is None or force:
                raise ImageBuildFailed(e.message, e.fix) from None
            log(f"{e.message}; using the image there is ({current.describe()})")
            return current
        key = f"{recipe_key()}-{today.digest()}"
        final = images_dir() / key
        if (final / "meta.json").exists() and not force:
            image = Image(final)
            log(f"image up to date: {final} ({image.describe()})")
            return image
        if shutil.which("mmdebstrap") is None:
            raise ImageBuildFailed("mmdebstrap is not installed", "run: sudo apt-get install mmdebstrap e2fsprogs")
        _refuse_if_in_use(final)
        _remove_stale_builds()
        log(_why_build(current, today, force))
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=images_dir()))
        try:
            image = _build(key, today, work, final, log)
        except BaseException:
            remove_tree(work)  # an interrupted build leaves no multi-GB debris
            raise
    _remove_unused_images(keep=key)
    return image


def _running_image() -> str | None:
    from .embedded import state

    running = state()
    return Path(running.image_dir).name if running else None


def _refuse_if_in_use(final: Path) -> None:
    if final.exists() and _running_image() == final.name:
        raise ImageBuildFailed("the running lab VM booted from this image; a rebuild would pull it from under it",
                               "stop the VM first: ebpf-lab vm down")


def _remove_stale_builds() -> None:
    """Builds a crash or a reboot left behind (we hold the build lock, so none of them is running)."""
    for stale in images_dir().glob(".build-*"):
        remove_tree(stale)


def remove_tree(path: Path) -> None:
    """Delete a build directory, unmounting first what a killed build left mounted in it.

    A build killed during mkfs leaves the chroot bind-mounted inside, with the host's /dev and /proc
    mounted in the chroot: deleting through them would delete the host's device nodes."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m == str(path) or m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _remove_unused_images(keep: str) -> None:
    """Old images, except the one a running VM booted from (its disk is still open)."""
    in_use = _running_image()
    for stale in images_dir().iterdir():
        if stale.name not in (keep, in_use) and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)


def _build(key: str, today: Resolution, work: Path, final: Path, log: Callable[[str], None]) -> Image:
    out = str(work)
    inputs = sorted(str(p) for p in provision_dir().iterdir())
    mode = "root" if os.geteuid() == 0 else "unshare"
    hooks = [
        'mkdir -p "$1"/root/provision',
        f'copy-in {" ".join(inputs)} /root/provision',
        'chroot "$1" bash /root/provision/lab-provision.sh --image',
        'rm -rf "$1"/root/provision',
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
    log(f"building {key} with mmdebstrap ({', '.join(today.kernels)}); this takes a few minutes")
    # mmdebstrap's own temporary root goes inside the build dir, so a crash leaves nothing elsewhere.
    env = dict(os.environ, TMPDIR=out)
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0 or not (work / "lab.img").exists():
        raise ImageBuildFailed(f"mmdebstrap failed (exit {proc.returncode})", "read the log above; check network access to the Debian mirror")
    meta = {"key": key, "suite": SUITE, "arch": ARCH, "kernel": (work / "kernel-release").read_text().strip(),
            "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "archive": dict(today.versions)}
    (work / "meta.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    log(f"image ready: {final} (kernel {meta['kernel']})")
    return Image(final)
