"""The simulated bench: device simulators as child processes plus a state file that drivers read.

``mulsen sim devices`` keeps them running for manual use; tests and the demo use
``running_simulators`` directly. The state file tells a capture command which serial port, clock
and virtual part to use, exactly as a real bench's configuration would name real devices.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from acquisition.clock import ScaledClock
from mulsen.atomic import atomic_write_text
from mulsen.errors import MulsenError

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
    extra: dict = field(default_factory=dict)  # endpoints of further simulators

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


@contextlib.contextmanager
def running_simulators(state_dir: str | Path, part: BenchPart, time_scale: float = 1.0, image_size: str = "full",
                       heater_args: list[str] | None = None) -> Iterator[tuple[SimBench, dict[str, SimulatorProcess]]]:
    """Start the device simulators, write the state file, stop them all on exit."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    epoch = time.monotonic()
    edge_log = state_dir / "heater_edges.jsonl"
    edge_log.unlink(missing_ok=True)
    link = state_dir / "heater.tty"
    heater = SimulatorProcess("hardware_mocks.heater_sim", [
        "--link", str(link), "--edge-log", str(edge_log), "--time-scale", repr(time_scale),
        "--clock-epoch", repr(epoch), *(heater_args or [])])
    processes = {"heater": heater}
    with contextlib.ExitStack() as stack:
        stack.enter_context(heater)
        bench = SimBench(state_dir, part, time_scale, epoch, str(link), edge_log, image_size)
        bench.save()
        yield bench, processes
