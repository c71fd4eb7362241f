"""Simulated benches share a machine: each run has its own token, address and state, and a stale state
never drives another run's simulators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mulsen.core.errors import MulsenError
from mulsen.hardware_mocks.devices import STATE_FILE, SimBench, running_simulators
from mulsen.hardware_mocks.sim_cameras import BenchPart

PART = BenchPart.parse("nut:1")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_benches_run_side_by_side_and_stop_cleanly(tmp_path: Path):
    from mulsen.acquisition.heater import open_heater

    with running_simulators(tmp_path / "a", PART, image_size="small") as (a, _), \
            running_simulators(tmp_path / "b", PART, image_size="small") as (b, _):
        assert a.robot_host != b.robot_host and a.run_token != b.run_token
        assert SimBench.load(tmp_path / "a").pids == a.pids and SimBench.load(tmp_path / "b").pids == b.pids
        for bench in (a, b):  # each heater answers on its own port
            with open_heater(bench.heater_port, bench.clock()) as heater:
                assert not heater.is_on()
        with pytest.raises(MulsenError, match="simulators of another run are using this state folder"), \
                running_simulators(tmp_path / "a", PART, image_size="small"):
            pass
        pids_a = dict(a.pids)
    for pid in pids_a.values():
        assert not _alive(pid)
    assert not (tmp_path / "a" / STATE_FILE).exists() and not (tmp_path / "a" / "heater.tty").exists()


def test_a_stale_or_foreign_state_is_refused(tmp_path: Path):
    with running_simulators(tmp_path / "live", PART, image_size="small") as (live, _):
        state = json.loads((tmp_path / "live" / STATE_FILE).read_text())
    # the file of a run that died (a SIGKILLed 'sim devices' cannot clean up): its PIDs are gone
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(MulsenError, match=r"stale simulator state .* restart with 'mulsen sim devices"):
        SimBench.load(tmp_path / "stale")
    # PIDs that are alive but belong to another run (another token) are not used either
    with running_simulators(tmp_path / "other", PART, image_size="small") as (other, _):
        forged = {**state, "pids": other.pids}
        (tmp_path / "stale" / STATE_FILE).write_text(json.dumps(forged))
        with pytest.raises(MulsenError, match="stale simulator state"):
            SimBench.load(tmp_path / "stale")
    # and a new run replaces the stale file
    with running_simulators(tmp_path / "stale", PART, image_size="small") as (fresh, _):
        assert SimBench.load(tmp_path / "stale").run_token == fresh.run_token != live.run_token


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sim_devices_stops_its_children_and_removes_its_state_on_a_signal(tmp_path: Path, sig: signal.Signals):
    state = tmp_path / "bench"
    proc = subprocess.Popen([sys.executable, "-m", "mulsen.cli", "sim", "devices", "--state", str(state),
                             "--size", "small"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (state / STATE_FILE).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    bench = SimBench.load(state)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in bench.pids.values())
    assert not (state / STATE_FILE).exists() and not (state / "heater.tty").exists()
