"""``mulsen demo``: the end-to-end demo on the simulators."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="run the end-to-end demo on the simulators",
        description="Generate a small synthetic MulSen-AD dataset from the virtual world, validate it, print its "
        "statistics, train the weight-free triple-sensor detector and evaluate it, inspect a fresh part; then "
        "calibrate the simulated bench, capture samples through the real drivers against the device simulators, "
        "curate them into a validated, packed and verified release, and close the inspector's loop: train on "
        "captured normals and judge freshly captured parts as they come off the bench.")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder (recreated)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from mulsen.cli import main as cli

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    data = out / "sim_dataset"
    _step(f"1. virtual world -> synthetic MulSen-AD dataset in {data}")
    if cli(["sim", "dataset", str(data), "--size", "small", "--seed", str(args.seed)]):
        return 1
    _step("2. validate the dataset against the MulSen-AD contract")
    if cli(["dataset", "validate", str(data), "--quiet-warnings"]):
        return 1
    _step("3. dataset statistics (the paper's Table 3) and the curator's HTML report (QA gallery)")
    if cli(["dataset", "stats", str(data)]) or cli(["dataset", "report", str(data), "--out",
                                                    str(out / "reports" / "dataset")]):
        return 1
    for title, argv in _detector_steps(out, data):
        _step(title)
        if cli(argv):
            return 1
    capture = write_fresh_part(out / "fresh_part", args.seed)
    _step(f"6. inspect a freshly rendered part ({capture})")
    if cli(["detect", str(capture), "--model", str(out / "models" / "capsule"), "--out", str(out / "detections"),
            "--report"]):
        return 1
    _step("7. calibrate the bench (RGB intrinsics, hand-eye, IR-to-RGB) and capture 24 parts through the device "
          "drivers against the simulators (heater on a pty, GenTL cameras, UR5 controller, laser scanner)")
    if capture_with_simulators(out / "captures", out / "sim_bench"):
        return 1
    _step("8. curate the captures into a MulSen-AD release: align and merge the dual scans, annotate (simulated "
          "curator: LabelMe + point selections), build, validate, pack, verify")
    if release_from_captures(out):
        return 1
    _step("9. the inspector's loop: train on the release's 20 captured normals, then capture 10 fresh parts (5 "
          "normal, 5 defective) with --detect and compare the verdicts with the truth")
    if closed_loop(out, out / "sim_bench"):
        return 1
    print(f"\ndemo finished: everything is under {out}/")
    print("reports (open in a browser, offline):")
    for what, page in (("dataset (curator's QA)", out / "reports" / "dataset" / "index.html"),
                       ("evaluation", out / "reports" / "evaluation" / "index.html"),
                       ("inspection of the fresh part", out / "detections" / "index.html"),
                       ("capture contact sheets", out / "captures" / "index.html")):
        print(f"  {what}: {page}" + ("" if page.exists() else " (missing!)"))
    return 0


LOOP_NORMALS = 20
# the bench captures: 20 normal nuts to train on, two normal and two defective ones for the test split
CAPTURE_PLAN = [(f"{200 + i}", f"nut:{200 + i}", "train") for i in range(LOOP_NORMALS)] + [
    ("230", "nut:230", "test"), ("231", "nut:231", "test"), ("232", "nut:232:hole", "test"),
    ("233", "nut:233:crack", "test")]
LOOP_TEST = [(f"{300 + i}", f"nut:{300 + i}", False) for i in range(5)] + [
    (f"{310 + i}", f"nut:{310 + i}:{kind}", True)
    for i, kind in enumerate(("hole", "crack", "broken", "foreign_body", "broken_inside"))]


def closed_loop(out: Path, state: Path) -> int:
    """Train on the captured release's normals, judge freshly captured parts right after their capture, print
    the confusion against the truth."""
    import json

    from mulsen.cli import main as cli
    from mulsen.hardware_mocks.devices import running_simulators
    from mulsen.hardware_mocks.sim_cameras import BenchPart

    loop = out / "loop"
    loop.mkdir()
    (loop / "fresh.csv").write_text("category,sample_id,part\n" + "".join(f"nut,{i},{p}\n" for i, p, _ in LOOP_TEST))
    common = ["--sim", str(state), "--frequency", "0.5", "--periods", "4", "--fps", "10", "--operator", "demo",
              "--calibration", str(out / "calibration")]
    steps = [
        ["train", str(out / "captured_dataset"), "--all", "--out", str(loop / "models")],
        ["capture", "batch", "--plan", str(loop / "fresh.csv"), "--out", str(loop / "fresh"), "--detect",
         str(loop / "models"), *common],
    ]
    with running_simulators(state, BenchPart("nut", 300), time_scale=20.0, image_size="small"):
        for argv in steps:
            print(f"$ mulsen {' '.join(argv)}", flush=True)
            if cli(argv):
                return 1
    verdicts = {v["capture"]: v for v in map(json.loads, (loop / "fresh/_detections/verdicts.jsonl").read_text()
                                              .splitlines())}
    counts = {"TP": 0, "FP": 0, "TN": 0, "FN": 0}
    for sample_id, _, defective in LOOP_TEST:
        said = verdicts[f"nut/{sample_id}"]["decision"] == "anomalous"
        counts[("T" if said == defective else "F") + ("P" if said else "N")] += 1
    correct = counts["TP"] + counts["TN"]
    print("\nverdicts on freshly captured parts        truly defective   truly normal")
    print(f"  judged anomalous                        {counts['TP']:>15}   {counts['FP']:>12}")
    print(f"  judged normal                           {counts['FN']:>15}   {counts['TN']:>12}")
    print(f"{correct} of {len(LOOP_TEST)} verdicts correct ({100 * correct / len(LOOP_TEST):.0f} %)")
    return 0


def capture_with_simulators(root: Path, state: Path) -> int:
    """``mulsen sim devices`` + ``mulsen capture batch`` on the capture plan (20x simulated time)."""
    from mulsen.cli import main as cli
    from mulsen.hardware_mocks.devices import running_simulators
    from mulsen.hardware_mocks.sim_cameras import BenchPart

    root.parent.mkdir(parents=True, exist_ok=True)
    plan = root.parent / "capture_plan.csv"
    plan.write_text("category,sample_id,part\n" + "".join(f"nut,{i},{p}\n" for i, p, _ in CAPTURE_PLAN))
    calibration = root.parent / "calibration"
    with running_simulators(state, BenchPart("nut", 200), time_scale=20.0, image_size="small"):
        for action in (["intrinsics", "--camera", "rgb"], ["hand-eye"], ["ir-rgb"]):
            print(f"$ mulsen calibrate {' '.join(action)} --sim {state} --out {calibration}", flush=True)
            if cli(["calibrate", *action, "--sim", str(state), "--out", str(calibration)]):
                return 1
        code = cli(["capture", "batch", "--plan", str(plan), "--out", str(root), "--sim", str(state),
                    "--frequency", "0.5", "--periods", "4", "--fps", "10", "--operator", "demo",
                    "--calibration", str(calibration)])
    if code == 0:
        sample = root / "nut" / "232"
        print(f"sample folder {sample}: {', '.join(sorted(p.name for p in sample.iterdir()))}")
    return code


def release_from_captures(out: Path) -> int:
    """merge scans -> simulated annotations -> build -> pack -> verify, on the demo's captures."""
    from mulsen.cli import main as cli

    captures, annotations, dataset = out / "captures", out / "annotations", out / "captured_dataset"
    splits = out / "capture_splits.csv"
    splits.write_text("category,sample_id,split\n" + "".join(f"nut,{i},{split}\n" for i, _, split in CAPTURE_PLAN))
    for argv in (["dataset", "merge", str(captures)],
                 ["sim", "annotate", str(captures), "--out", str(annotations)],
                 ["dataset", "build", "--captures", str(captures), "--annotations", str(annotations), "--out",
                  str(dataset), "--split-policy", "manifest", "--splits", str(splits)],
                 ["dataset", "pack", str(dataset), "--version", "0.1.0", "--license",
                  "CC BY-NC-SA 4.0 (simulated demo data)"],
                 ["dataset", "verify", str(out / "captured_dataset-0.1.0.tar.gz")]):
        print(f"$ mulsen {' '.join(argv)}", flush=True)
        if cli(argv):
            return 1
    return 0


def write_fresh_part(folder: Path, seed: int) -> Path:
    """A capture folder (rgb.png, infrared.png, pointcloud.stl) of a new capsule with a broken spot."""
    from mulsen.dataset.formats import write_ir, write_rgb
    from mulsen.dataset.meshio import stable_mesh, write_stl
    from mulsen.hardware_mocks.world.defects import DefectConfig
    from mulsen.hardware_mocks.world.generate import SampleTask, render_sample

    content, _ = render_sample(SampleTask("capsule", "test", 0, "broken", 10_000 + seed, "small", DefectConfig()))
    folder.mkdir(parents=True, exist_ok=True)
    write_rgb(folder / "rgb.png", content.rgb)
    write_ir(folder / "infrared.png", content.infrared)
    write_stl(folder / "pointcloud.stl", stable_mesh(content.mesh))
    return folder


def _detector_steps(out: Path, data: Path) -> list[tuple[str, list[str]]]:
    models = out / "models"
    return [
        ("4. train the weight-free triple-sensor detector", ["train", str(data), "--all", "--out", str(models)]),
        ("5. evaluate single, dual and triple sensor combinations (Table 5)",
         ["evaluate", str(data), "--models", str(models), "--all-combinations", "--out", str(out / "results"),
          "--report", str(out / "reports" / "evaluation")]),
    ]
