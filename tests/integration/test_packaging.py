"""One installed namespace: the wheel holds only ``mulsen/``, and PyPI's ``dataset`` cannot shadow ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "mulsen", "acquisition", "calibration", "dataset", "detection",
           "hardware_mocks")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built into a wheel (from a copy, so the checkout's build/ is untouched) and unpacked."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(work / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((work / "dist").glob("mulsen_toolkit-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(work / "site")
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mulsen"}, tops
    assert "mulsen/dataset/reader.py" in names and "mulsen/hardware_mocks/world/scene.py" in names
    return work / "site"


def _run(site: Path, cwd: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})


@pytest.mark.slow
def test_the_wheel_installs_one_namespace_that_other_packages_cannot_shadow(installed: Path, tmp_path: Path):
    # a user's own (or PyPI's) `dataset` module beside our package
    (tmp_path / "dataset.py").write_text("NAME = 'theirs'\n")
    done = _run(installed, tmp_path, "import dataset; from mulsen.dataset import MulsenDataset; "
                "from mulsen.detection.config import DetectorConfig; import mulsen.dataset.reader as r; "
                "print(dataset.NAME, MulsenDataset.__name__, DetectorConfig().fusion, r.__file__)")
    assert done.returncode == 0, done.stderr
    name, cls, fusion, where = done.stdout.split()
    assert (name, cls, fusion) == ("theirs", "MulsenDataset", "zmean") and where.startswith(str(installed))
    (tmp_path / "dataset.py").unlink()
    missing = _run(installed, tmp_path, "import dataset")
    assert "No module named 'dataset'" in missing.stderr
