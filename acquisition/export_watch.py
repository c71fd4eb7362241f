"""Watch the scanner software's export folder and pick up each scan once it is completely written.

A file counts as complete when its size has stayed the same for ``settle_s`` and it parses; files
written under a temporary name and renamed at the end are picked up on the rename. Temporary and
hidden names are ignored, as is everything already present when the watch starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.dataset.scans import SCAN_SUFFIXES, Scan, read_scan

_TEMPORARY = (".tmp", ".part", ".partial", "~", ".crdownload")


@dataclass
class _Candidate:
    size: int
    stable_since: float
    failures: int = 0


@dataclass(frozen=True)
class ExportedScan:
    path: Path
    scan: Scan
    completed_at: float  # time.time() when it was found complete


class ExportWatcher:
    def __init__(self, folder: str | Path, settle_s: float = 1.0, poll_s: float = 0.1) -> None:
        self.folder = Path(folder)
        self.settle_s = settle_s
        self.poll_s = poll_s
        if not self.folder.is_dir():
            raise MulsenError(f"scanner export folder {self.folder} does not exist")
        self._seen = {p.name for p in self._listing()}
        self._before = {p.name for p in self.folder.iterdir()}  # other files already there are not news
        self._candidates: dict[str, _Candidate] = {}

    def _listing(self) -> list[Path]:
        return [p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES
                and not p.name.startswith(".") and not p.name.endswith(_TEMPORARY)]

    def poll(self) -> list[ExportedScan]:
        """Scans that became complete since the last poll (oldest first)."""
        now = time.monotonic()
        done = []
        for path in sorted(self._listing(), key=lambda p: p.stat().st_mtime):
            if path.name in self._seen:
                continue
            size = path.stat().st_size
            candidate = self._candidates.get(path.name)
            if candidate is None or candidate.size != size:
                self._candidates[path.name] = _Candidate(size, now)
                continue
            if size == 0 or now - candidate.stable_since < self.settle_s:
                continue
            try:
                scan = read_scan(path)
            except DataFormatError:
                candidate.failures += 1
                if candidate.failures >= 3:  # stable and still unreadable: the export itself is broken
                    self._seen.add(path.name)
                    raise
                candidate.stable_since = now
                continue
            self._seen.add(path.name)
            del self._candidates[path.name]
            done.append(ExportedScan(path, scan, time.time()))
        return done

    def wait_for(self, count: int, timeout_s: float, on_scan: Callable[[ExportedScan], None] | None = None,
                 should_stop: Callable[[], None] | None = None) -> list[ExportedScan]:
        """Block until ``count`` new complete scans have appeared, in completion order."""
        deadline = time.monotonic() + timeout_s
        found: list[ExportedScan] = []
        while len(found) < count:
            for item in self.poll():
                found.append(item)
                if on_scan:
                    on_scan(item)
            if len(found) >= count:
                break
            if time.monotonic() > deadline:
                others = sorted(p.name for p in self.folder.iterdir() if p.is_file() and p.name not in self._before
                                and p.suffix.lower() not in SCAN_SUFFIXES and not p.name.startswith("."))
                hint = (f"; not scan formats, ignored: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''} "
                        f"(readable: {', '.join(SCAN_SUFFIXES)})") if others else ""
                raise MulsenError(f"scanner export folder {self.folder}: {len(found)} of {count} scans appeared "
                                  f"within {timeout_s:g} s{hint}")
            if should_stop:
                should_stop()
            time.sleep(self.poll_s)
        return found[:count]
