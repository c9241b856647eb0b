"""The ssh key of this install: generated once, never shared, never baked into an image."""
from __future__ import annotations

import subprocess
from pathlib import Path

from ..paths import data_dir


def identity_file() -> Path:
    return data_dir() / "id_ed25519"


def ensure_key() -> Path:
    key = identity_file()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ebpf-lab", "-f", str(key)], check=True)
    return key


def public_key_blob() -> str:
    """The base64 part of the public key, which the VM's init reads from the kernel command line."""
    return Path(str(ensure_key()) + ".pub").read_text().split()[1]
