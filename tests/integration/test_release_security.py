"""Releases as an attacker or a broken download would hand them over: verify names every problem, pack
never packs what it should not, and nothing is ever extracted to check."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from mulsen.cli import main
from mulsen.core.errors import MulsenError
from mulsen.dataset.release import pack_dataset, verify_release


@pytest.fixture
def release(small_dataset: Path) -> Path:
    return pack_dataset(small_dataset, "1.0")


def _rewrite(archive: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]],
             drop: str | None = None) -> Path:
    """A copy of ``archive`` with members added (and one dropped): what a tampered release looks like."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == drop:
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for info, data in extra:
            if data is not None:
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def test_a_clean_release_verifies_and_is_never_extracted(release: Path, tmp_path: Path):
    before = set(release.parent.iterdir())
    report = verify_release(release)
    assert report.ok and report.checked > 20
    assert set(release.parent.iterdir()) == before  # nothing unpacked beside it


@pytest.mark.parametrize("name, kind, link, data, expected", [
    ("ds-1.0/../evil.txt", tarfile.REGTYPE, "", b"x", "climbs out"),
    ("/tmp/evil.txt", tarfile.REGTYPE, "", b"x", "absolute member name"),
    ("ds-1.0/passwd", tarfile.SYMTYPE, "/etc/passwd", None, "a link to '/etc/passwd'"),
    ("ds-1.0/hard", tarfile.LNKTYPE, "/etc/passwd", None, "a link to '/etc/passwd'"),
    ("ds-1.0/dev", tarfile.CHRTYPE, "", None, "special member"),
    ("ds-1.0/fifo", tarfile.FIFOTYPE, "", None, "special member"),
    ("other/file.txt", tarfile.REGTYPE, "", b"x", "outside the release folder"),
    ("ds-1.0/capsule/notes.txt", tarfile.REGTYPE, "", b"x", "not in the manifest"),
])
def test_hostile_members_are_reported(release: Path, tmp_path: Path, name, kind, link, data, expected):
    tampered = _rewrite(release, tmp_path / "t.tar.gz", [(_info(name, kind, link), data)])
    report = verify_release(tampered)
    assert len(report.problems) == 1 and expected in report.problems[0], report.problems
    assert main(["dataset", "verify", str(tampered)]) == 1


def test_a_link_put_in_place_of_a_listed_image_is_caught(release: Path, tmp_path: Path):
    victim = "ds-1.0/capsule/RGB/train/0.png"
    tampered = _rewrite(release, tmp_path / "t.tar.gz", [(_info(victim, tarfile.SYMTYPE, "/etc/passwd"), None)],
                        drop=victim)
    problems = verify_release(tampered).problems
    assert problems == [f"{victim}: a link to '/etc/passwd' (a release holds regular files only)"]


def test_a_duplicate_member_is_caught(release: Path, tmp_path: Path):
    with tarfile.open(release) as tar:
        first = next(m for m in tar.getmembers() if m.name.endswith(".png"))
    tampered = _rewrite(release, tmp_path / "t.tar.gz", [(_info(first.name), b"not a png")])
    assert any("duplicate member" in p for p in verify_release(tampered).problems)


def test_broken_gzip_and_truncated_downloads_are_findings_not_tracebacks(release: Path, tmp_path: Path, capsys):
    data = release.read_bytes()
    crc = tmp_path / "crc.tar.gz"
    crc.write_bytes(data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:])  # the gzip trailer's CRC
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    for broken in (crc, cut):
        problems = verify_release(broken).problems
        assert len(problems) == 1 and "gzip stream is corrupt or truncated" in problems[0]
        assert main(["dataset", "verify", str(broken)]) == 1
    plain = tmp_path / "plain.tar"
    plain.write_bytes(gzip.decompress(data)[:5000])  # an uncompressed tar cut short
    assert main(["dataset", "verify", str(plain)]) in (1, 2)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x00" * 100)
    assert main(["dataset", "verify", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == err.count("error: ")


def test_a_cut_manifest_is_one_line(release: Path, tmp_path: Path, capsys):
    manifest = "ds-1.0/MANIFEST.json"
    tampered = _rewrite(release, tmp_path / "t.tar.gz", [(_info(manifest), b'{"format": "mulsen-release')],
                        drop=manifest)
    assert main(["dataset", "verify", str(tampered)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "MANIFEST.json" in err and "not valid JSON" in err


def test_pack_refuses_invalid_datasets_links_and_unsafe_versions(small_dataset: Path, tmp_path: Path):
    with pytest.raises(MulsenError, match="must be letters, digits"):
        pack_dataset(small_dataset, "1.0/../../evil")
    assert not list(tmp_path.rglob("*evil*"))
    (small_dataset / "capsule/RGB/train/link.png").symlink_to("/etc/passwd")
    with pytest.raises(MulsenError, match=r"regular files only; found capsule/RGB/train/link.png \(a link\)"):
        pack_dataset(small_dataset, "1.0")
    (small_dataset / "capsule/RGB/train/link.png").unlink()
    stl = small_dataset / "nut/Pointcloud/train/0.stl"
    stl.write_bytes(stl.read_bytes()[:200])  # a corrupt mesh
    with pytest.raises(MulsenError, match="does not validate"):
        pack_dataset(small_dataset, "1.0")
    assert not list(small_dataset.parent.glob("*.tar.gz"))
    archive = pack_dataset(small_dataset, "1.0", allow_invalid=True)
    card = archive.with_name("ds-1.0.DATASET_CARD.md").read_text()
    assert "did not pass `mulsen dataset validate`" in card
    assert verify_release(archive).ok  # the archive is intact; its manifest says what it holds


def test_sigterm_during_pack_leaves_nothing_behind(small_dataset: Path, tmp_path: Path):
    big = small_dataset / "capsule/RGB/train"
    for i in range(3):  # make hashing and compressing take a while
        (big / f"{i}.png").write_bytes((big / f"{i}.png").read_bytes() + os.urandom(20 << 20))
    proc = subprocess.Popen([sys.executable, "-m", "mulsen.cli", "dataset", "pack", str(small_dataset),
                             "--version", "2.0", "--allow-invalid"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(small_dataset.parent.glob(".ds-2.0*")) and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert sorted(p.name for p in small_dataset.parent.iterdir()) == ["ds"]
