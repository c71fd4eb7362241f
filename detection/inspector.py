"""The inspector's Python API: ``Detector.load(folder).predict(capture_folder)`` -> ``Detection``.

The ``mulsen detect`` command is a thin loop over this class; everything it writes comes from
``write_detection``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError
from mulsen.core.files import read_input
from mulsen.core.parallel import Executor
from mulsen.core.records import Record
from mulsen.dataset.build import capture_folders
from mulsen.dataset.records import SampleData

from .config import DetectorConfig
from .detect import Detection, capture_category, load_capture, overlay
from .model import TripleADModel


class Detector:
    """A trained detector for one category, ready to judge parts."""

    def __init__(self, model: TripleADModel) -> None:
        self.model = model

    @property
    def category(self) -> str:
        return self.model.category

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> Detector:
        return cls(TripleADModel.load(folder, device=device))

    @classmethod
    def fit(cls, dataset, category: str, config: DetectorConfig | None = None,
            progress: Callable | None = None) -> Detector:
        """Train on the ``train`` normals of ``category`` in a ``MulsenDataset``."""
        model = TripleADModel(category, config or DetectorConfig())
        return cls(model.fit(dataset.load, dataset.records(category, "train"), progress=progress))

    def save(self, folder: str | Path) -> Path:
        return self.model.save(folder)

    def load_sample(self, folder: str | Path, force: bool = False) -> SampleData:
        """A capture folder's sample (merged first if it holds only its two scans); a capture whose
        ``capture.json`` names another category is refused unless ``force``."""
        folder = Path(folder)
        category = capture_category(folder) if folder.is_dir() else None
        if category is not None and category != self.category and not force:
            raise MulsenError(f"{folder}: a {category} capture, but the model is for {self.category} "
                              "(--force to judge it anyway)")
        return load_capture(folder)

    def predict(self, sample: SampleData | str | Path, false_alarm_rate: float | None = None,
                force: bool = False, name: str = "") -> Detection:
        """The verdict on a capture folder or a loaded sample, with warnings where the input is unlike the
        training data."""
        if isinstance(sample, SampleData):
            return self.model.detect(sample, name, false_alarm_rate)
        return self.model.detect(self.load_sample(sample, force), name or str(sample), false_alarm_rate)


# also called in the worker after a part's files are written: (detector, detection, sample, folder, files)
AfterWrite = Callable[[Detector, Detection, SampleData, Path, dict[str, str]], object]


def inspect_one(detector: Detector, force: bool, false_alarm_rate: float | None,
                task: tuple[str | Path, Path], after: AfterWrite | None = None) -> Detection:
    """Load one capture folder, judge it and write its results into ``task[1]`` (a worker's task); ``after``
    (e.g. the HTML page of ``mulsen detect --report``) runs there too, while the sample is in memory."""
    sample, out = task
    data = detector.load_sample(sample, force)
    detection = detector.predict(data, false_alarm_rate, name=str(sample))
    files = write_detection(detector, detection, data, out)
    if after is not None:
        after(detector, detection, data, out, files)
    return detection


def inspect_many(detector: Detector, tasks: list[tuple[str | Path, Path]], force: bool = False,
                 false_alarm_rate: float | None = None, jobs: int | Executor = 1,
                 progress: Callable | None = None, after: AfterWrite | None = None) -> list[Detection]:
    """``inspect_one`` over (capture folder, output folder) pairs on ``jobs`` processes, in order; the first
    refused capture stops the run (its error is raised)."""
    judge_one = partial(inspect_one, detector, force, false_alarm_rate, after=after)
    return detector.model.config.runner(jobs).map(judge_one, tasks, progress)


def write_detection(detector: Detector, detection: Detection, data: SampleData, out: Path) -> dict[str, str]:
    """Overlays (RGB, IR), per-vertex point-cloud scores (PLY) and ``report.json`` into the folder ``out``."""
    from mulsen.dataset.formats import write_png

    out.mkdir(parents=True, exist_ok=True)
    model = detector.model
    files: dict[str, str] = {}
    for m, image in (("rgb", data.rgb), ("infrared", data.infrared)):
        if m in detection.maps:
            path = out / f"{m}_overlay.png"
            write_png(path, overlay(image, detection.maps[m], map_scale(model, m)), "RGB", overwrite=True)
            files[m] = path.name
    if "pointcloud" in detection.maps:
        path = out / "pointcloud_scores.ply"
        scale = map_scale(model, "pointcloud")
        write_scored_ply(path, data.mesh.vertices, data.mesh.faces, detection.maps["pointcloud"], scale)
        files["pointcloud"] = path.name
    detection.report(files, model.identity).write(out / "report.json")
    return files


def map_scale(model: TripleADModel, modality: str) -> float:
    """Where a modality's map turns anomalous in overlays: the held-out normals' mean object score (their
    largest patch distance) in the column the maps come from; the paper's object score is that distance
    / 1000 times a reweighting of about 0.5, so it is undone there."""
    config = model.config
    mean = float(model.norm_mean[config.score_columns.index(config.column(modality, config.modalities))])
    return mean * 2000 if config.object_score == "paper" else mean


def write_scored_ply(path: Path, vertices: np.ndarray, faces: np.ndarray | None, scores: np.ndarray,
                     scale: float) -> None:
    """Binary PLY with a float ``score`` per vertex and colours (grey up to ``scale``, red at twice it).

    Written by hand: open3d cannot store a custom scalar property and plyfile is not a dependency; the
    format is a fixed header plus one numpy record array.
    """
    from mulsen.core.atomic import atomic_path

    level = np.clip(np.asarray(scores, np.float64) / max(scale, 1e-12) - 1, 0, 1)
    grey = np.array([170.0, 170.0, 170.0])
    colours = np.round(grey * (1 - level[:, None]) + np.array([255.0, 0, 0]) * level[:, None]).astype(np.uint8)
    vertex = np.empty(len(vertices), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                      ("blue", "u1"), ("score", "<f4")])
    vertex["x"], vertex["y"], vertex["z"] = (np.asarray(vertices, np.float32)[:, k] for k in range(3))
    vertex["red"], vertex["green"], vertex["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    vertex["score"] = scores
    header = ["ply", "format binary_little_endian 1.0", "comment per-vertex anomaly scores by mulsen detect",
              f"element vertex {len(vertices)}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue", "property float score"]
    face_count = 0 if faces is None else len(faces)
    if face_count:
        header += [f"element face {face_count}", "property list uchar int vertex_indices"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex.tobytes())
        if face_count:
            assert faces is not None
            face = np.empty(face_count, [("n", "u1"), ("i", "<i4", (3,))])
            face["n"], face["i"] = 3, faces
            handle.write(face.tobytes())


VERDICTS_FILE = "verdicts.jsonl"


@dataclass(frozen=True)
class Verdict(Record):
    """One line of ``verdicts.jsonl`` written by ``mulsen detect --watch``: one judged capture."""

    FORMAT = "mulsen-verdict"
    VERSION = 1
    WHAT = "verdict"

    capture: str  # the capture folder, relative to the watched root
    category: str
    decision: str  # normal | anomalous | error
    fused: float | None = None
    threshold: float | None = None
    reliable: bool = True
    warnings: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    judged: str = ""  # ISO time
    seconds: float = 0.0  # from finding the capture to the verdict
    problem: str = ""  # why a capture could not be judged

    def summary(self) -> str:
        """The line an operator reads: the verdict, or why the part was not judged."""
        if self.decision == "error":
            return f"{self.capture}: not judged: {self.problem}"
        flag = "" if self.reliable else " (UNRELIABLE: " + "; ".join(self.warnings) + ")"
        return (f"{self.capture}: {self.decision}{flag} (fused {self.fused:.3f}, threshold {self.threshold:.3f}) "
                f"in {self.seconds:.2f} s")


def judged_captures(log: Path) -> set[str]:
    """Captures already in a verdict log (a line cut by a crash counts as not judged)."""
    if not log.exists():
        return set()
    done = set()
    for line in read_input(log, "verdict log").decode("utf-8", errors="replace").splitlines():
        with contextlib.suppress(MulsenError):
            done.add(Verdict.from_json(line, log).capture)
    return done


def watch(root: str | Path, models: str | Path, out: str | Path, poll_s: float = 0.5, once: bool = False,
          stop: threading.Event | None = None, report: Callable[[Verdict], None] | None = None,
          after: AfterWrite | None = None) -> int:
    """Judge every finished capture under ``root`` with ``models/<category>``, as it appears; append one
    ``Verdict`` per capture to ``out/verdicts.jsonl`` and write its files under ``out/<category>/<id>/``.

    Restarts resume: captures already in the log are not judged again. ``once``: judge what is there and
    return. ``after``: as ``inspect_one``'s (a page per part). Returns the number of captures judged in this run.
    """
    root, models, out = Path(root), Path(models), Path(out)
    if not root.is_dir():
        raise MulsenError(f"{root}: captures folder not found")
    if not models.is_dir():
        raise MulsenError(f"{models}: models folder not found")
    out.mkdir(parents=True, exist_ok=True)
    log = out / VERDICTS_FILE
    done = judged_captures(log)
    detectors: dict[str, Detector | MulsenError] = {}
    count = 0
    while True:
        # finished captures only: a session works in .partial/ and renames a sample into place when complete
        for category, _, folder in capture_folders(root):
            relative = folder.relative_to(root).as_posix()
            if relative in done:
                continue
            started = time.monotonic()
            if category not in detectors:
                try:
                    detectors[category] = Detector.load(models / category)
                except MulsenError as exc:
                    detectors[category] = exc
            verdict = judge(detectors[category], folder, relative, category, out, started, after=after)
            _append_line(log, json.dumps(verdict.to_dict()))
            done.add(relative)
            count += 1
            if report:
                report(verdict)
        if once or (stop is not None and stop.wait(poll_s)) or (stop is None and _sleep(poll_s)):
            return count


def judge(detector: Detector | MulsenError, folder: Path, relative: str, category: str, out: Path,
          started: float | None = None, log: Path | None = None, after: AfterWrite | None = None) -> Verdict:
    """The verdict on one capture, its files under ``out/relative``; a bad capture (or a model that could not
    be loaded) gives an "error" verdict with the reason instead of an exception. ``log``: appended to."""
    started = time.monotonic() if started is None else started
    try:
        if isinstance(detector, MulsenError):
            raise detector
        data = detector.load_sample(folder)
        detection = detector.predict(data, name=relative)
        files = write_detection(detector, detection, data, out / relative)
        if after is not None:
            after(detector, detection, data, out / relative, files)
        verdict = Verdict(relative, category, detection.decision, detection.fused, detection.threshold,
                          detection.reliable, detection.warnings, dict(detection.scores), _now(),
                          round(time.monotonic() - started, 3))
    except MulsenError as exc:  # a bad capture is logged and skipped, never stops the line
        verdict = Verdict(relative, category, "error", judged=_now(), problem=str(exc),
                          seconds=round(time.monotonic() - started, 3))
    if log is not None:
        _append_line(log, json.dumps(verdict.to_dict()))
    return verdict


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _append_line(path: Path, line: str) -> None:
    """One write per line (a crash cuts at most this line, and ``judged_captures`` skips a cut line)."""
    with open(path, "a+b") as handle:
        handle.seek(0, 2)
        prefix = b""
        if handle.tell():
            handle.seek(-1, 2)
            prefix = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(prefix + line.encode("utf-8") + b"\n")
