"""The simulated bench: device simulators as child processes plus a state file that drivers read.

``mulsen sim devices`` keeps them running for manual use; tests and the demo use
``running_simulators`` directly. The state file tells a capture command which serial port, clock
and virtual part to use, exactly as a real bench's configuration would name real devices.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mulsen.acquisition.clock import ScaledClock
from mulsen.core.atomic import atomic_write_text
from mulsen.core.errors import DataFormatError, MulsenError
from mulsen.core.files import read_input

from .processes import SimulatorProcess
from .sim_cameras import BenchPart

STATE_FILE = "devices.json"


TOKEN_ENV = "MULSEN_SIM_TOKEN"  # each simulator child carries its run's token in its environment
ROBOT_START_TRIES = 5  # another run may take the same free loopback address between probe and bind


@dataclass
class SimBench:
    """Where one run of the simulated bench lives: its devices' endpoints, the child PIDs and the run token.

    A client loads it with ``SimBench.load``, which refuses a state whose processes are gone or belong
    to another run (PIDs are reused): a stale state never drives somebody else's simulators.
    """

    state_dir: Path
    part: BenchPart
    time_scale: float
    clock_epoch: float
    heater_port: str
    heater_edge_log: Path
    image_size: str = "full"
    robot_host: str = ""
    scan_export_dir: str = ""
    scan_request_dir: str = ""
    scan_format: str = "stl"
    run_token: str = ""
    pids: dict[str, int] = field(default_factory=dict)

    def clock(self) -> ScaledClock:
        return ScaledClock(self.time_scale, self.clock_epoch)

    def save(self) -> Path:
        path = self.state_dir / STATE_FILE
        record = {**asdict(self), "part": str(self.part), "state_dir": str(self.state_dir),
                  "heater_edge_log": str(self.heater_edge_log)}
        atomic_write_text(path, json.dumps(record, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, check: bool = True) -> SimBench:
        path = Path(path)
        if path.is_dir():
            path = path / STATE_FILE
        try:
            record = json.loads(read_input(path, "simulator state file"))
            record["part"] = BenchPart.parse(record["part"])
            record["state_dir"] = Path(record["state_dir"])
            record["heater_edge_log"] = Path(record["heater_edge_log"])
            bench = cls(**record)
        except DataFormatError as exc:
            if "not found" in exc.problem:
                raise MulsenError(f"{path}: no simulator state; start them with 'mulsen sim devices'") from None
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MulsenError(f"{path}: not a simulator state file ({exc})") from None
        if check:
            bench.check_running(path)
        return bench

    def check_running(self, path: Path | None = None) -> None:
        """Every simulator of this run is alive and carries this run's token, else a one-line refusal."""
        where = path or self.state_dir / STATE_FILE
        gone = [name for name, pid in sorted(self.pids.items()) if not _runs_with_token(pid, self.run_token)]
        if not self.run_token or not self.pids or gone:
            raise MulsenError(f"{where}: stale simulator state ({', '.join(gone) or 'no run token'} not running "
                              f"for this run); restart with 'mulsen sim devices --state {self.state_dir}'")


def _runs_with_token(pid: int, token: str) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    environ = Path(f"/proc/{pid}/environ")
    if not environ.parent.exists():  # no procfs: liveness is all that can be checked
        return True
    try:
        return f"{TOKEN_ENV}={token}".encode() in environ.read_bytes().split(b"\0")
    except OSError:
        return False


def free_loopback_host(port: int = 30002, skip: frozenset[str] = frozenset()) -> str:
    """A 127.0.0.N address whose ``port`` is free (urx always connects to port 30002)."""
    for n in range(2, 255):
        host = f"127.0.0.{n}"
        if host in skip:
            continue
        with contextlib.suppress(OSError), socket.create_server((host, port)):
            return host
    raise MulsenError(f"no free loopback address for port {port}")


@contextlib.contextmanager
def running_simulators(state_dir: str | Path, part: BenchPart, time_scale: float = 1.0, image_size: str = "full",
                       heater_args: list[str] | None = None, scan_format: str = "stl",
                       robot_args: list[str] | None = None) -> Iterator[tuple[SimBench, dict[str, SimulatorProcess]]]:
    """Start the device simulators (heater, UR5 controller, scanner), write the state file, stop them on exit.

    Each run has its own token, state folder and loopback address: any number of runs share a machine.
    On exit (also through SIGTERM turned into an exception) the children stop and the state file and
    the heater's port link are removed, so nothing points at processes that no longer exist.
    """
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / STATE_FILE).exists():
        try:
            SimBench.load(state_dir)
        except MulsenError:
            (state_dir / STATE_FILE).unlink(missing_ok=True)  # a stale state from a run that died: replaced
        else:
            raise MulsenError(f"{state_dir}: simulators of another run are using this state folder")
    token = secrets.token_hex(8)
    epoch = time.monotonic()
    edge_log = state_dir / "heater_edges.jsonl"
    edge_log.unlink(missing_ok=True)
    link = state_dir / "heater.tty"
    exports, requests = state_dir / "scanner_exports", state_dir / "scanner_requests"
    env = {TOKEN_ENV: token}
    with contextlib.ExitStack() as stack:
        stack.callback(_remove_state, state_dir, link)
        heater = stack.enter_context(SimulatorProcess("mulsen.hardware_mocks.heater_sim", [
            "--link", str(link), "--edge-log", str(edge_log), "--time-scale", repr(time_scale),
            "--clock-epoch", repr(epoch), *(heater_args or [])], env=env))
        robot, robot_host, tried = None, "", set[str]()
        for attempt in range(ROBOT_START_TRIES):
            robot_host = free_loopback_host(skip=frozenset(tried))
            tried.add(robot_host)
            try:
                robot = stack.enter_context(SimulatorProcess("mulsen.hardware_mocks.ur_sim", [
                    "--host", robot_host, "--script-log", str(state_dir / "robot_script.jsonl"),
                    *(robot_args or [])], env=env))
                break
            except MulsenError:
                if attempt == ROBOT_START_TRIES - 1:
                    raise
        assert robot is not None
        scanner = stack.enter_context(SimulatorProcess("mulsen.hardware_mocks.scanner_sim", [
            "--requests", str(requests), "--exports", str(exports), "--log", str(state_dir / "scanner_log.jsonl")],
            env=env))
        processes = {"heater": heater, "robot": robot, "scanner": scanner}
        bench = SimBench(state_dir, part, time_scale, epoch, str(link), edge_log, image_size, robot_host,
                         str(exports), str(requests), scan_format, token,
                         {name: p.pid for name, p in processes.items()})
        bench.save()
        yield bench, processes


def _remove_state(state_dir: Path, link: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if link.is_symlink():
        link.unlink()
