"""Progress and console hygiene: a bar on a terminal, plain periodic lines in logs, nothing with -q; device
libraries' warnings only with -v."""

from __future__ import annotations

import subprocess
import sys

from mulsen.core import progress as progress_module
from mulsen.core.progress import _Lines, progress, progress_fraction


def test_lines_come_at_most_every_ten_seconds_and_once_at_the_end(capsys):
    now = [100.0]
    lines = _Lines("scoring", 50, clock=lambda: now[0])
    for done in range(1, 51):
        now[0] += 1.0  # one second per item: 50 s in all
        lines.update(done)
    lines.finish(50)
    printed = capsys.readouterr().err.splitlines()
    assert printed[:2] == ["scoring: 10/50 (20 %), 10 s", "scoring: 20/50 (40 %), 20 s"]
    assert len(printed) == 6 and printed[-1] == "scoring: 50/50 done in 50 s"


def test_off_a_terminal_a_short_job_prints_one_plain_line(capsys, monkeypatch):
    monkeypatch.delenv("MULSEN_NO_PROGRESS", raising=False)
    assert list(progress(range(3), 3, "reading")) == [0, 1, 2]
    assert capsys.readouterr().err == "reading: 3/3 done in 0 s\n"  # no carriage returns, no bar
    with progress_fraction("heating") as update:
        update(0.5, "period 1/2")
        update(0.99, "period 2/2")
    assert capsys.readouterr().err == "heating: done in 0 s · period 2/2\n"  # the last status as its summary
    monkeypatch.setenv("MULSEN_NO_PROGRESS", "1")  # mulsen -q, the tests
    assert list(progress(range(3), 3, "reading")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert progress_module._mode() == "off"


def _warn_like_urx(flags: str) -> str:
    code = ("from mulsen.cli import _quiet_logs; import warnings, logging; "
            f"_quiet_logs({flags}); "
            "warnings.warn_explicit('notifyAll() is deprecated, use notify_all() instead', DeprecationWarning, "
            "'urx/ursecmon.py', 318); logging.getLogger('harvesters.core').warning('CTI file loaded'); "
            "logging.getLogger('mulsen.acquisition').warning('ours')")
    return subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          check=True).stderr


def test_device_library_noise_only_with_verbose():
    default = _warn_like_urx("False, False")
    assert "notifyAll" not in default and "CTI" not in default and "ours" in default
    verbose = _warn_like_urx("True, False")
    assert "notifyAll" in verbose and "CTI file loaded" in verbose
    assert _warn_like_urx("False, True") == ""  # -q: not even our warnings
