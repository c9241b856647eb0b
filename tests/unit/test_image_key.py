"""The image's cache key follows Debian's archive: a new kernel ABI or package rebuilds it, with a reason."""
from __future__ import annotations

import json

import pytest

from ebpf_lab.errors import ImageBuildFailed
from ebpf_lab.vm import image
from ebpf_lab.vm.archive import ArchiveUnreachable, Resolution, installs

SIMULATION = """\
NOTE: This is only a simulation!
Inst linux-image-6.1.0-57-cloud-amd64 (6.1.192-3 Debian-Security:12/stable-security [amd64])
Inst linux-image-cloud-amd64 (6.1.192-3 Debian-Security:12/stable-security [amd64])
Inst libbpf1 [1:1.0.1-2] (1:1.1.0-1 Debian:12.13/stable [amd64])
Conf linux-image-cloud-amd64 (6.1.192-3 Debian-Security:12/stable-security [amd64])
"""

BEFORE = {"linux-image-6.1.0-56-cloud-amd64": "6.1.191-1", "linux-image-cloud-amd64": "6.1.191-1",
          "python3-bpfcc": "0.26.0+ds-1"}
TODAY = {"linux-image-6.1.0-57-cloud-amd64": "6.1.192-3", "linux-image-cloud-amd64": "6.1.192-3",
         "python3-bpfcc": "0.26.0+ds-1"}


def test_what_apt_would_install_is_read_from_its_simulation():
    assert installs(SIMULATION) == {"linux-image-6.1.0-57-cloud-amd64": "6.1.192-3",
                                    "linux-image-cloud-amd64": "6.1.192-3", "libbpf1": "1:1.1.0-1"}


def test_a_resolution_names_its_kernels_and_what_moved_kernels_first():
    today = Resolution(TODAY)
    assert today.kernels == ["linux-image-6.1.0-57-cloud-amd64"]
    assert today.changes_since(BEFORE) == ("linux-image-6.1.0-57-cloud-amd64 new, linux-image-cloud-amd64 "
                                           "6.1.191-1 -> 6.1.192-3, linux-image-6.1.0-56-cloud-amd64 gone")
    assert today.changes_since(TODAY) == "nothing"
    assert today.digest() == Resolution(dict(reversed(TODAY.items()))).digest()  # order does not matter
    assert today.digest() != Resolution(BEFORE).digest()
    many = Resolution({f"p{i}": "2" for i in range(9)})
    assert many.changes_since({f"p{i}": "1" for i in range(9)}).endswith("and 3 more")


@pytest.fixture
def fake_builds(tmp_path, monkeypatch):
    """build_image with the archive and mmdebstrap replaced: what was built, and the archive to return."""
    monkeypatch.setenv("EBPF_LAB_CACHE", str(tmp_path))
    archive = {"today": Resolution(BEFORE)}
    built = []

    def today():
        if isinstance(archive["today"], Exception):
            raise archive["today"]
        return archive["today"]

    def build(key, resolution, work, final, log):
        work.rename(final)
        (final / "meta.json").write_text(json.dumps({"kernel": resolution.kernels[0].removeprefix("linux-image-"),
                                                     "built": f"2026-12-0{len(built) + 1} 10:00 UTC",
                                                     "archive": dict(resolution.versions)}))
        built.append(key)
        return image.Image(final)

    monkeypatch.setattr(image, "archive_today", today)
    monkeypatch.setattr(image, "_build", build)
    monkeypatch.setattr(image.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(image, "_running_image", lambda: None)
    return archive, built


def test_the_same_archive_reuses_the_image_and_a_new_kernel_rebuilds_it_saying_why(fake_builds):
    archive, built = fake_builds
    said = []
    first = image.build_image(log=said.append)
    assert said[0] == "building the lab image (none built yet)" and len(built) == 1
    said.clear()
    assert image.build_image(log=said.append) == first and len(built) == 1
    assert said == [f"image up to date: {first.dir} (kernel 6.1.0-56-cloud-amd64, built 2026-12-01 10:00 UTC)"]

    archive["today"] = Resolution(TODAY)  # Debian published 6.1.0-57
    said.clear()
    second = image.build_image(log=said.append)
    assert len(built) == 2 and second != first and not first.dir.exists()
    assert said[0].startswith("rebuilding the lab image: Debian's archive moved on since the image of "
                              "2026-12-01 10:00 UTC: linux-image-6.1.0-57-cloud-amd64 new"), said
    assert image.find_image() == second and second.describe().startswith("kernel 6.1.0-57-cloud-amd64, built ")


def test_offline_the_image_there_is_is_used_and_without_one_the_build_says_why(fake_builds):
    archive, built = fake_builds
    archive["today"] = ArchiveUnreachable("could not ask Debian's archive (apt-get update): E: no network",
                                          "check network access")
    with pytest.raises(ImageBuildFailed, match="could not ask Debian's archive"):
        image.build_image(log=lambda *_: None)
    archive["today"] = Resolution(BEFORE)
    first = image.build_image(log=lambda *_: None)
    archive["today"] = ArchiveUnreachable("could not ask Debian's archive (apt-get update): E: no network")
    said = []
    assert image.build_image(log=said.append) == first and len(built) == 1
    assert "using the image there is (kernel 6.1.0-56-cloud-amd64" in said[0]


def test_a_changed_recipe_rebuilds_and_says_so(fake_builds, monkeypatch):
    _, built = fake_builds
    image.build_image(log=lambda *_: None)
    monkeypatch.setattr(image, "recipe_key", lambda: "another-recipe")
    said = []
    image.build_image(log=said.append)
    assert said[0] == "rebuilding the lab image: provision/ or the image recipe changed since the last build"
    assert len(built) == 2


def test_the_image_packages_are_the_provisioning_scripts_own():
    names = image.image_packages()
    assert names[:2] == image.BASE_PACKAGES
    assert {"python3-bpfcc", "bpftool", "clang", "linux-image-cloud-amd64", "linux-headers-cloud-amd64"} <= set(names)
