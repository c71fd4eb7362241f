"""Laser-scanner simulator: exports two partial scans of the virtual part (the second one flipped)
into an export folder, the way the vendor software would, with realistic timing.

A separate process. It waits for scan requests (json files dropped into ``--requests``; the
simulated operator writes them when the capture session asks for the scans), then writes scan A,
waits while the part is "flipped", and writes scan B. Files are written in chunks under their final
name (``--write-mode direct``, so readers must wait until the size settles) or under a temporary
name that is renamed at the end (``rename``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mulsen.dataset.scans import write_scan

from .processes import stop_event
from .sim_cameras import BenchPart
from .world.generate import TOP_VERTICES
from .world.scanner import flip_transform, grid_spacing_for, part_mesh, partial_scan

EXTENSIONS = {"stl": ".stl", "stl_ascii": ".stl", "ply": ".ply", "ply_ascii": ".ply", "obj": ".obj", "xyz": ".xyz",
              "csv": ".csv"}


def scan_pair(part: BenchPart, size: str, seed: int = 0, placement: tuple[float, float, float] | None = None):
    """The two partial scans (upright; flipped and put back down by the operator) of ``part``, in scanner mm,
    and the exact transform taking scan B onto scan A."""
    scene = part.scene()
    spacing = grid_spacing_for(scene, TOP_VERTICES[size])
    height = float(part_mesh(scene, spacing).vertices[:, 2].max())
    mesh = part_mesh(scene, spacing, wall_rows=max(1, int(np.ceil(height / spacing))))
    rng = np.random.default_rng([part.seed, seed])
    if placement is None:  # where the operator puts the turned part back: within 5 mm, any yaw
        placement = (rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-np.pi, np.pi))
    scan_a = partial_scan(scene, mesh, rng, flipped=False)
    scan_b = partial_scan(scene, mesh, rng, flipped=True, placement=placement)
    return scan_a, scan_b, flip_transform(scene, float(mesh.vertices[:, 2].max()), placement)


def export(mesh, path: Path, fmt: str, write_s: float, mode: str) -> None:
    """Write like the vendor software: in chunks over ``write_s`` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / f"scan{EXTENSIONS[fmt]}"
        faces = None if fmt in ("xyz", "csv") else mesh.faces
        write_scan(staged, mesh.vertices, faces, fmt)
        data = staged.read_bytes()
    target = path.with_name(path.name + ".tmp") if mode == "rename" else path
    chunks = 8
    with open(target, "wb") as out:
        for k in range(chunks):
            out.write(data[k * len(data) // chunks:(k + 1) * len(data) // chunks])
            out.flush()
            time.sleep(write_s / chunks)
    if mode == "rename":
        target.rename(path)


def serve(requests: Path, exports: Path, log: Path | None) -> None:
    stopping = stop_event()
    counter = len(list(exports.glob("scan_*")))
    while not stopping.is_set():
        # hidden names are requests still being written (atomic_write_text's temporary files)
        pending = sorted(p for p in requests.glob("*.json") if not p.name.startswith("."))
        if not pending:
            time.sleep(0.05)
            continue
        request_path = pending[0]
        request = json.loads(request_path.read_text())
        request_path.unlink()
        part = BenchPart.parse(request["part"])
        scan_a, scan_b, truth = scan_pair(part, request.get("size", "small"), request.get("seed", 0))
        fmt = request.get("format", "stl")
        time.sleep(request.get("delay_s", 0.2))
        for label, mesh in (("A", scan_a), ("B", scan_b)):
            counter += 1
            path = exports / f"scan_{counter:04d}{EXTENSIONS[fmt]}"
            export(mesh, path, fmt, request.get("write_s", 0.2), request.get("write_mode", "direct"))
            if log:
                with open(log, "a") as handle:
                    handle.write(json.dumps({"request": request.get("id"), "scan": label, "file": path.name,
                                             "part": str(part), "points": len(mesh.vertices),
                                             "b_to_a": truth.tolist()}) + "\n")
            if label == "A":
                time.sleep(request.get("flip_s", 0.3))  # the operator turns the part over


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Laser-scanner export simulator")
    parser.add_argument("--requests", type=Path, required=True, help="folder polled for scan requests (json)")
    parser.add_argument("--exports", type=Path, required=True, help="the scanner software's export folder")
    parser.add_argument("--log", type=Path, help="jsonl log of every exported scan")
    args = parser.parse_args(argv)
    args.requests.mkdir(parents=True, exist_ok=True)
    args.exports.mkdir(parents=True, exist_ok=True)
    print(f"READY {args.exports}", flush=True)
    serve(args.requests, args.exports, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
