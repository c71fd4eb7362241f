"""Release packaging: a tar.gz of the dataset with a manifest (size + sha256 of every file, counts,
statistics, tool version, date) and a generated dataset card; verification of a received release."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mulsen import __version__
from mulsen.core.atomic import atomic_path, atomic_write_text
from mulsen.core.errors import MulsenError
from mulsen.core.parallel import Executor, as_executor
from mulsen.core.records import Record

from .layout import find_root
from .reader import MulsenDataset
from .stats import CategoryStats, dataset_stats, format_table, to_json
from .validate import WARNING, validate_dataset

MANIFEST = "MANIFEST.json"
CARD = "DATASET_CARD.md"
CHUNK = 1 << 20
# a release name or version becomes a file name and the archive's top folder: no separators, no "..",
# nothing a shell or another system would read differently
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def sha256_of(stream) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def dataset_files(root: Path) -> list[Path]:
    """The dataset's regular files (hidden ones, the manifest and the card left out); a link, a FIFO or a
    device inside the dataset is refused by name: a release never carries or follows one."""
    files, odd = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            odd.append(f"{relative.as_posix()} ({'a link' if stat.S_ISLNK(mode) else 'not a regular file'})")
        elif stat.S_ISREG(mode) and path.name not in (MANIFEST, CARD):
            files.append(path)
    if odd:
        raise MulsenError(f"{root}: a release holds regular files only; found {', '.join(odd[:5])}"
                          + (f" and {len(odd) - 5} more" if len(odd) > 5 else ""))
    return files


def check_release_name(value: str, what: str) -> str:
    if not SAFE_NAME.fullmatch(value) or ".." in value:
        raise MulsenError(f"release {what} {value!r} must be letters, digits and . _ + - (no '/' or '..', "
                          "at most 100 characters)")
    return value


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class ReleaseManifest(Record):
    """``MANIFEST.json`` of a release: every file's size and SHA-256, counts and statistics."""

    FORMAT = "mulsen-release-manifest"
    VERSION = 2  # 2: the dataset's validation result
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
    # "passed", or "FAILED: N errors (packed with --allow-invalid)"; "not recorded" for version 1 manifests
    validation: str = "passed"

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("format") == f"{cls.FORMAT}/1":
            return {**data, "format": cls.tag(), "validation": "not recorded"}
        return super().migrate(data)

    @classmethod
    def from_dict(cls, data: object) -> ReleaseManifest:
        if isinstance(data, dict) and "format" not in data and "files" in data:  # packed before manifests had a tag
            data = {**data, "format": f"{cls.FORMAT}/1"}
        return super().from_dict(data)


def _hash_file(path: Path) -> FileEntry:
    try:
        with open(path, "rb") as handle:
            digest, size = sha256_of(handle)
    except OSError as exc:
        raise MulsenError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return FileEntry(size, digest)


def build_manifest(root: Path, version: str, name: str,
                   progress: Callable[[Iterable, int], Iterable] | None = None,
                   validation: str = "passed", jobs: int | Executor = 1,
                   rows: list[CategoryStats] | None = None) -> ReleaseManifest:
    """The manifest of the dataset at ``root`` (``rows``: its ``dataset_stats`` when the caller has them)."""
    files = dataset_files(root)
    hashed = as_executor(jobs).map(_hash_file, files, progress)  # one file per task, in file order
    entries = {path.relative_to(root).as_posix(): entry for path, entry in zip(files, hashed, strict=True)}
    stats = json.loads(to_json(rows if rows is not None else dataset_stats(MulsenDataset(root))))
    return ReleaseManifest(name, version, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           f"mulsen-toolkit {__version__}", len(entries), sum(e.size for e in entries.values()),
                           _counts(entries), tuple(stats), entries, validation)


def _counts(entries: dict[str, FileEntry]) -> dict[str, int]:
    """Samples per category/split/type from the RGB file names."""
    counts: dict[str, int] = {}
    for name in entries:
        parts = name.split("/")
        if len(parts) >= 4 and parts[1] == "RGB" and parts[-1].endswith(".png") and parts[2] in ("train", "test"):
            key = "/".join([parts[0], parts[2]] + ([parts[3]] if parts[2] == "test" else []))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class CardInfo:
    """What a dataset card says beyond the files: the terms of use and how to cite (given when packing)."""

    license: str = ""  # e.g. "CC BY-NC-SA 4.0"; empty: the card says none was given
    citation: str = ""  # a BibTeX entry or a plain reference


def provenance_summary(root: Path) -> list[str]:
    """Markdown lines on how the samples were acquired, from the build's provenance logs: capture dates,
    operators, split policy and acquisition settings, each with its number of samples (settings that differ
    between samples are all listed)."""
    from collections import Counter

    from .writer import read_provenance

    entries = [e for e in read_provenance(root)[0] if isinstance(e.get("sample"), str) and "captured" in e]
    if not entries:
        return ["Not built from captures (no provenance log): acquisition settings unknown."]
    dates = sorted(d for d in (str(e["captured"])[:10] for e in entries) if re.fullmatch(r"\d{4}-\d\d-\d\d", d))
    lines = [f"- captured: {dates[0]} to {dates[-1]} ({len(dates)} of {len(entries)} samples dated)" if dates
             else f"- captured: no capture dates recorded ({len(entries)} samples)"]
    operators = Counter(str(e.get("operator", "unknown")) for e in entries)
    lines.append("- operators: " + ", ".join(f"{name} ({n})" for name, n in operators.most_common()))
    policies = Counter(str(e.get("split_policy", "not recorded")) for e in entries)
    lines.append("- split policy: " + ", ".join(f"{name} ({n})" for name, n in policies.most_common()))
    settings: dict[str, Counter] = {}
    for entry in entries:
        for key, value in (entry.get("acquisition") or {}).items():
            settings.setdefault(str(key), Counter())[str(value)] += 1
    for key, values in settings.items():
        lines.append(f"- {key}: " + "; ".join(f"{v} ({n})" for v, n in values.most_common()))
    if not settings:
        logged = any("acquisition" in e for e in entries)
        lines.append("- acquisition settings: " + ("none in the captures' records" if logged
                                                   else "not recorded (built before they were logged)"))
    return lines


def dataset_card(manifest: ReleaseManifest, table: str, warnings: tuple[str, ...] = (),
                 info: CardInfo = CardInfo(), acquisition: list[str] | None = None) -> str:
    warning = [] if manifest.validation in ("passed", "not recorded") else [
        f"**Warning: this release did not pass `mulsen dataset validate`** ({manifest.validation}).", ""]
    status = (f"Validation: {manifest.validation}, {len(warnings)} warning(s) (listed below)."
              if manifest.validation != "not recorded" else "Validation: not recorded.")
    terms = ["## License", "", info.license or "No license was given when this release was packed (`mulsen dataset "
             "pack --license`): ask the publisher before any use.", "", "## Citation", "",
             *(["```", info.citation.strip(), "```"] if info.citation.strip() else
               ["No citation was given (`mulsen dataset pack --citation`)."]), ""]
    lines = [f"# {manifest.name} {manifest.version}", "", *warning, status, "", *terms,
             f"Created {manifest.created} with {manifest.tool}. Layout: MulSen-AD "
             "(`<category>/{RGB,Infrared,Pointcloud}/{train,test/<type>,GT/<type>}`).", "",
             f"{manifest.file_count} files, {manifest.total_bytes / 2 ** 20:.1f} MiB. Every file's size and "
             f"SHA-256 are listed in `{MANIFEST}`; check a copy with `mulsen dataset verify`.", "",
             "## Acquisition", "", *(acquisition or ["Acquisition settings unknown."]), "",
             "## Statistics (Table 3 of the MulSen-AD paper)", "", "```", table.rstrip(), "```", "",
             "## Samples per category, split and type", "", "| category/split/type | samples |", "|---|---|"]
    lines += [f"| {key} | {count} |" for key, count in manifest.counts.items()]
    if warnings:
        lines += ["", "## Validation warnings", "", *[f"- {w}" for w in warnings]]
    lines += ["", "## Labels", "",
              "Each modality is labelled 1 only where the defect is visible and annotated in it; the object "
              "label is their OR (`data.csv` per defect type). RGB/IR masks are 0/255 PNGs; point-cloud ground "
              "truth lists the anomalous mesh vertices (`# x, y, z`).", ""]
    return "\n".join(lines)


def pack_dataset(root: str | Path, version: str, out: str | Path | None = None, name: str | None = None,
                 progress: Callable[[Iterable, int], Iterable] | None = None, allow_invalid: bool = False,
                 jobs: int | Executor = 1, card_info: CardInfo = CardInfo()) -> Path:
    """Write ``<name>-<version>.tar.gz`` (plus the manifest and card beside it); return the archive path.

    The dataset is validated first and refused if invalid (``allow_invalid`` packs it anyway and says so
    in the manifest and the card). Only regular files go in; the archive appears complete or not at all.
    """
    root = find_root(Path(root))[0]
    version = check_release_name(version, "version")
    name = check_release_name(name or root.name, "name")
    archive = Path(out) if out else root.parent / f"{name}-{version}.tar.gz"
    prefix = f"{name}-{version}"
    beside = [archive.with_name(f"{prefix}.{MANIFEST}"), archive.with_name(f"{prefix}.{CARD}")]
    for target in (archive, *beside):
        if target.exists() or target.is_symlink():
            raise MulsenError(f"{target}: already exists, refusing to overwrite a release")
    if archive.resolve().is_relative_to(root.resolve()):
        raise MulsenError(f"{archive}: the archive cannot be written inside the dataset it packs")
    dataset_files(root)  # links and special files are refused before anything reads through them
    report = validate_dataset(root, jobs=jobs)
    validation = "passed"
    if not report.ok:
        summary = f"{len(report.errors)} errors, first: {report.errors[0]}"
        if not allow_invalid:
            raise MulsenError(f"{root}: the dataset does not validate ({summary}); fix it, or pack it anyway "
                              "with --allow-invalid (recorded in the manifest and the card)")
        validation = f"FAILED: {summary} (packed with --allow-invalid)"
    rows = dataset_stats(MulsenDataset(root))  # once: every mask is read for it (manifest and card)
    manifest = build_manifest(root, version, name, progress, validation, jobs, rows)
    warnings = tuple(f"{p.message} ({p.kind})" for p in report.problems if p.severity == WARNING)
    card = dataset_card(manifest, format_table(rows), warnings, card_info, provenance_summary(root))
    manifest_bytes = (manifest.to_json() + "\n").encode()
    now = int(datetime.now().timestamp())
    with atomic_path(archive, overwrite=False) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for data, member in ((manifest_bytes, MANIFEST), (card.encode(), CARD)):
            info = tarfile.TarInfo(f"{prefix}/{member}")
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
        for relative, entry in manifest.files.items():
            _add_regular(tar, root / relative, f"{prefix}/{relative}", entry, now)
    atomic_write_text(beside[0], manifest_bytes.decode(), overwrite=False)
    atomic_write_text(beside[1], card, overwrite=False)
    return archive


def _add_regular(tar: tarfile.TarFile, path: Path, arcname: str, entry: FileEntry, mtime: int) -> None:
    """One regular file as a plain member (no owner names, no links); it must still be what was hashed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise MulsenError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode) or os.fstat(handle.fileno()).st_size != entry.size:
            raise MulsenError(f"{path}: changed while packing (no longer the file that was hashed)")
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = entry.size, mtime, 0o644
        tar.addfile(info, handle)


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_release(path: str | Path, progress: Callable[[Iterable, int], Iterable] | None = None) -> VerifyReport:
    """Check a release archive or an unpacked folder against its manifest.

    Reported (never extracted, nothing written): missing, changed and unlisted files; in an archive also a
    broken or truncated gzip stream, members outside the release folder, absolute names, links, devices,
    FIFOs and duplicate names. Unreadable input (no such file, not an archive, no manifest) is an error.
    """
    path = Path(path)
    report = VerifyReport()
    if path.is_dir():
        _verify_folder(path, report, progress)
        return report
    if not path.is_file():
        raise MulsenError(f"{path}: no such release archive or folder")
    if not _gzip_intact(path, report):
        return report
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below; open errors reported here)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise MulsenError(f"{path}: not a readable release archive ({exc})") from None
    with tar:
        try:
            members = tar.getmembers()
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            report.problems.append(f"{path.name}: archive is truncated or corrupt ({exc})")
            return report
        manifest_name = next((m.name for m in members if m.isfile() and m.name.count("/") == 1
                              and m.name.endswith(f"/{MANIFEST}")), None)
        if manifest_name is None:
            raise MulsenError(f"{path}: no {MANIFEST} in the archive's top folder (not a packed release)")
        prefix = manifest_name.rsplit("/", 1)[0] + "/"
        present: dict[str, tarfile.TarInfo] = {}
        for member in members:
            problem = _member_problem(member, prefix, present)
            if problem:
                report.problems.append(f"{member.name}: {problem}")
            elif member.isfile():
                present[member.name[len(prefix):]] = member
        try:
            manifest = ReleaseManifest.from_json(_read_member(tar, present[MANIFEST]), f"{path}:{manifest_name}")
        except ValueError as exc:
            raise MulsenError(f"{path}:{manifest_name}: {exc}") from None
        expected = manifest.files
        for relative in progress(sorted(expected), len(expected)) if progress else sorted(expected):
            listed = present.get(relative)
            if listed is None:
                if not any(p.startswith(f"{prefix}{relative}:") for p in report.problems):
                    report.problems.append(f"{relative}: missing")
                continue
            stream = tar.extractfile(listed)
            assert stream is not None  # a regular file member
            _compare(report, relative, expected[relative], *sha256_of(stream))
        extra = set(present) - set(expected) - {MANIFEST, CARD}
        report.problems += [f"{relative}: not in the manifest" for relative in sorted(extra)]
    return report


def _gzip_intact(path: Path, report: VerifyReport) -> bool:
    """Decompress the whole stream once (CRC and length checked at its end) when the file is gzip."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            return True  # a plain tar: nothing to check here
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        report.problems.append(f"{path.name}: gzip stream is corrupt or truncated ({exc})")
        return False
    return True


def _member_problem(member: tarfile.TarInfo, prefix: str, seen: dict[str, tarfile.TarInfo]) -> str | None:
    name = member.name
    parts = name.split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute member name (refused)"
    if ".." in parts:
        return "member name climbs out of the release ('..', refused)"
    if member.issym() or member.islnk():
        return f"a link to {member.linkname!r} (a release holds regular files only)"
    if not (member.isfile() or member.isdir()):
        return "a device, FIFO or other special member (refused)"
    if not (name.startswith(prefix) or (member.isdir() and name.rstrip("/") == prefix.rstrip("/"))):
        return f"outside the release folder {prefix.rstrip('/')}"
    if member.isfile() and name[len(prefix):] in seen:
        return "duplicate member (a second copy would overwrite the first when unpacked)"
    return None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file member
    return stream.read()


def _verify_folder(path: Path, report: VerifyReport, progress: Callable[[Iterable, int], Iterable] | None) -> None:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise MulsenError(f"{path}: no {MANIFEST} (not a packed release)")
    manifest = ReleaseManifest.read(manifest_path)
    found: dict[str, Path] = {}
    for item in sorted(path.rglob("*")):
        relative = item.relative_to(path).as_posix()
        mode = item.lstat().st_mode
        if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            report.problems.append(f"{relative}: {'a link' if stat.S_ISLNK(mode) else 'a special file'} "
                                   "(a release holds regular files only)")
        elif stat.S_ISREG(mode) and item.name not in (MANIFEST, CARD) \
                and not any(part.startswith(".") for part in item.relative_to(path).parts):
            found[relative] = item
    expected = manifest.files
    for relative in progress(sorted(expected), len(expected)) if progress else sorted(expected):
        if relative not in found:
            if not any(p.startswith(f"{relative}:") for p in report.problems):
                report.problems.append(f"{relative}: missing")
            continue
        try:
            with open(found[relative], "rb") as handle:
                _compare(report, relative, expected[relative], *sha256_of(handle))
        except OSError as exc:
            report.problems.append(f"{relative}: unreadable ({exc.strerror or exc})")
    report.problems += [f"{relative}: not in the manifest" for relative in sorted(set(found) - set(expected))]


def _compare(report: VerifyReport, relative: str, expected: FileEntry, digest: str, size: int) -> None:
    report.checked += 1
    if size != expected.size:
        report.problems.append(f"{relative}: size {size} bytes, manifest says {expected.size}")
    elif digest != expected.sha256:
        report.problems.append(f"{relative}: content changed (sha256 mismatch)")
