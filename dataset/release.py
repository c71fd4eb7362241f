"""Release packaging: a tar.gz of the dataset with a manifest (size + sha256 of every file, counts,
statistics, tool version, date) and a generated dataset card; verification of a received release."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mulsen import __version__
from mulsen.core.atomic import atomic_path, atomic_write_text
from mulsen.core.errors import MulsenError
from mulsen.core.records import Record

from .layout import find_root
from .reader import MulsenDataset
from .stats import dataset_stats, format_table, to_json

MANIFEST = "MANIFEST.json"
CARD = "DATASET_CARD.md"
CHUNK = 1 << 20


def sha256_of(stream) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def dataset_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MANIFEST, CARD)
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class ReleaseManifest(Record):
    """``MANIFEST.json`` of a release: every file's size and SHA-256, counts and statistics."""

    FORMAT = "mulsen-release-manifest"
    VERSION = 1
    WHAT = "release manifest"

    name: str
    version: str
    created: str
    tool: str
    file_count: int
    total_bytes: int
    counts: dict[str, int]
    statistics: tuple[dict[str, Any], ...]  # Table 3 rows (``dataset stats --json``)
    files: dict[str, FileEntry]

    @classmethod
    def from_dict(cls, data: object) -> ReleaseManifest:
        if isinstance(data, dict) and "format" not in data and "files" in data:  # packed before manifests had a tag
            data = {**data, "format": cls.tag()}
        return super().from_dict(data)


def build_manifest(root: Path, version: str, name: str,
                   progress: Callable[[Iterable, int], Iterable] | None = None) -> ReleaseManifest:
    files = dataset_files(root)
    entries = {}
    for path in progress(files, len(files)) if progress else files:
        with open(path, "rb") as handle:
            digest, size = sha256_of(handle)
        entries[path.relative_to(root).as_posix()] = FileEntry(size, digest)
    stats = json.loads(to_json(dataset_stats(MulsenDataset(root))))
    return ReleaseManifest(name, version, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           f"mulsen-toolkit {__version__}", len(entries), sum(e.size for e in entries.values()),
                           _counts(entries), tuple(stats), entries)


def _counts(entries: dict[str, FileEntry]) -> dict[str, int]:
    """Samples per category/split/type from the RGB file names."""
    counts: dict[str, int] = {}
    for name in entries:
        parts = name.split("/")
        if len(parts) >= 4 and parts[1] == "RGB" and parts[-1].endswith(".png") and parts[2] in ("train", "test"):
            key = "/".join([parts[0], parts[2]] + ([parts[3]] if parts[2] == "test" else []))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def dataset_card(manifest: ReleaseManifest, table: str) -> str:
    lines = [f"# {manifest.name} {manifest.version}", "",
             f"Created {manifest.created} with {manifest.tool}. Layout: MulSen-AD "
             "(`<category>/{RGB,Infrared,Pointcloud}/{train,test/<type>,GT/<type>}`).", "",
             f"{manifest.file_count} files, {manifest.total_bytes / 2 ** 20:.1f} MiB. Every file's size and "
             f"SHA-256 are listed in `{MANIFEST}`; check a copy with `mulsen dataset verify`.", "",
             "## Statistics (Table 3 of the MulSen-AD paper)", "", "```", table.rstrip(), "```", "",
             "## Samples per category, split and type", "", "| category/split/type | samples |", "|---|---|"]
    lines += [f"| {key} | {count} |" for key, count in manifest.counts.items()]
    lines += ["", "## Labels", "",
              "Each modality is labelled 1 only where the defect is visible and annotated in it; the object "
              "label is their OR (`data.csv` per defect type). RGB/IR masks are 0/255 PNGs; point-cloud ground "
              "truth lists the anomalous mesh vertices (`# x, y, z`).", ""]
    return "\n".join(lines)


def pack_dataset(root: str | Path, version: str, out: str | Path | None = None, name: str | None = None,
                 progress: Callable[[Iterable, int], Iterable] | None = None) -> Path:
    """Write ``<name>-<version>.tar.gz`` (plus the manifest and card beside it); return the archive path."""
    root = find_root(Path(root))[0]
    name = name or root.name
    archive = Path(out) if out else root.parent / f"{name}-{version}.tar.gz"
    if archive.exists():
        raise MulsenError(f"{archive}: already exists, refusing to overwrite a release")
    manifest = build_manifest(root, version, name, progress)
    card = dataset_card(manifest, format_table(dataset_stats(MulsenDataset(root))))
    manifest_bytes = (manifest.to_json() + "\n").encode()
    prefix = f"{name}-{version}"
    with atomic_path(archive, overwrite=False) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for data, member in ((manifest_bytes, MANIFEST), (card.encode(), CARD)):
            info = tarfile.TarInfo(f"{prefix}/{member}")
            info.size, info.mtime, info.mode = len(data), int(datetime.now().timestamp()), 0o644
            tar.addfile(info, io.BytesIO(data))
        for relative in manifest.files:
            tar.add(root / relative, arcname=f"{prefix}/{relative}", recursive=False)
    atomic_write_text(archive.with_name(f"{prefix}.{MANIFEST}"), manifest_bytes.decode())
    atomic_write_text(archive.with_name(f"{prefix}.{CARD}"), card)
    return archive


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_release(path: str | Path, progress: Callable[[Iterable, int], Iterable] | None = None) -> VerifyReport:
    """Check a release archive or an unpacked folder against its manifest: missing, extra, changed files."""
    path = Path(path)
    report = VerifyReport()
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise MulsenError(f"{path}: no {MANIFEST} (not a packed release)")
        manifest = ReleaseManifest.read(manifest_path)
        found = {p.relative_to(path).as_posix(): p for p in dataset_files(path)}
        expected = manifest.files
        for relative in progress(sorted(expected), len(expected)) if progress else sorted(expected):
            if relative not in found:
                report.problems.append(f"{relative}: missing")
                continue
            with open(found[relative], "rb") as handle:
                _compare(report, relative, expected[relative], *sha256_of(handle))
        report.problems += [f"{relative}: not in the manifest" for relative in sorted(set(found) - set(expected))]
        return report
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below; open errors reported here)
    except (OSError, tarfile.TarError) as exc:
        raise MulsenError(f"{path}: not a readable release archive ({exc})") from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        manifest_name = next((n for n in members if n.endswith(f"/{MANIFEST}") and n.count("/") == 1), None)
        if manifest_name is None:
            raise MulsenError(f"{path}: no {MANIFEST} in the archive")
        prefix = manifest_name.rsplit("/", 1)[0] + "/"
        manifest_file = tar.extractfile(members[manifest_name])
        assert manifest_file is not None  # a regular file member
        manifest = ReleaseManifest.from_json(manifest_file.read(), f"{path}:{manifest_name}")
        expected = manifest.files
        present = {n[len(prefix):]: m for n, m in members.items() if n.startswith(prefix)}
        for relative in progress(sorted(expected), len(expected)) if progress else sorted(expected):
            member = present.get(relative)
            if member is None:
                report.problems.append(f"{relative}: missing")
                continue
            stream = tar.extractfile(member)
            assert stream is not None  # members are regular files
            _compare(report, relative, expected[relative], *sha256_of(stream))
        extra = set(present) - set(expected) - {MANIFEST, CARD}
        report.problems += [f"{relative}: not in the manifest" for relative in sorted(extra)]
    return report


def _compare(report: VerifyReport, relative: str, expected: FileEntry, digest: str, size: int) -> None:
    report.checked += 1
    if size != expected.size:
        report.problems.append(f"{relative}: size {size} bytes, manifest says {expected.size}")
    elif digest != expected.sha256:
        report.problems.append(f"{relative}: content changed (sha256 mismatch)")
