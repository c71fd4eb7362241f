"""The simulated bench: device simulators as child processes plus a state file that drivers read.

``mulsen sim devices`` keeps them running for manual use; tests and the demo use
``running_simulators`` directly. The state file tells a capture command which serial port, clock
and virtual part to use, exactly as a real bench's configuration would name real devices.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mulsen.acquisition.clock import ScaledClock
from mulsen.core.atomic import atomic_write_text
from mulsen.core.errors import MulsenError

from .processes import SimulatorProcess
from .sim_cameras import BenchPart

STATE_FILE = "devices.json"


@dataclass
class SimBench:
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

    def clock(self) -> ScaledClock:
        return ScaledClock(self.time_scale, self.clock_epoch)

    def save(self) -> Path:
        path = self.state_dir / STATE_FILE
        record = {**asdict(self), "part": str(self.part), "state_dir": str(self.state_dir),
                  "heater_edge_log": str(self.heater_edge_log)}
        atomic_write_text(path, json.dumps(record, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SimBench:
        path = Path(path)
        if path.is_dir():
            path = path / STATE_FILE
        try:
            record = json.loads(path.read_text())
            record["part"] = BenchPart.parse(record["part"])
            record["state_dir"] = Path(record["state_dir"])
            record["heater_edge_log"] = Path(record["heater_edge_log"])
            return cls(**record)
        except FileNotFoundError:
            raise MulsenError(f"{path}: no simulator state; start them with 'mulsen sim devices'") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise MulsenError(f"{path}: not a simulator state file ({exc})") from None


def free_loopback_host(port: int = 30002) -> str:
    """A 127.0.0.N address whose ``port`` is free (urx always connects to port 30002)."""
    for n in range(2, 255):
        host = f"127.0.0.{n}"
        with contextlib.suppress(OSError), socket.create_server((host, port)):
            return host
    raise MulsenError(f"no free loopback address for port {port}")


@contextlib.contextmanager
def running_simulators(state_dir: str | Path, part: BenchPart, time_scale: float = 1.0, image_size: str = "full",
                       heater_args: list[str] | None = None, scan_format: str = "stl",
                       robot_args: list[str] | None = None) -> Iterator[tuple[SimBench, dict[str, SimulatorProcess]]]:
    """Start the device simulators (heater, UR5 controller, scanner), write the state file, stop them on exit."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    epoch = time.monotonic()
    edge_log = state_dir / "heater_edges.jsonl"
    edge_log.unlink(missing_ok=True)
    link = state_dir / "heater.tty"
    robot_host = free_loopback_host()
    exports, requests = state_dir / "scanner_exports", state_dir / "scanner_requests"
    processes = {
        "heater": SimulatorProcess("mulsen.hardware_mocks.heater_sim", [
            "--link", str(link), "--edge-log", str(edge_log), "--time-scale", repr(time_scale),
            "--clock-epoch", repr(epoch), *(heater_args or [])]),
        "robot": SimulatorProcess("mulsen.hardware_mocks.ur_sim", [
            "--host", robot_host, "--script-log", str(state_dir / "robot_script.jsonl"), *(robot_args or [])]),
        "scanner": SimulatorProcess("mulsen.hardware_mocks.scanner_sim", [
            "--requests", str(requests), "--exports", str(exports), "--log", str(state_dir / "scanner_log.jsonl")]),
    }
    with contextlib.ExitStack() as stack:
        for process in processes.values():
            stack.enter_context(process)
        bench = SimBench(state_dir, part, time_scale, epoch, str(link), edge_log, image_size, robot_host,
                         str(exports), str(requests), scan_format)
        bench.save()
        yield bench, processes
