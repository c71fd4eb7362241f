"""Start device simulators as child processes and wait until they publish their endpoint."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mulsen.core.errors import MulsenError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def stop_event() -> threading.Event:
    """In a simulator process: an event set by SIGTERM or SIGINT, for the serving loop to end cleanly."""
    event = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: event.set())
    return event


class SimulatorProcess:
    """``with SimulatorProcess("mulsen.hardware_mocks.heater_sim", [...]) as sim: sim.endpoint`` (a path or address).

    The child runs in its own session so that a Ctrl-C aimed at the host does not reach it, like a
    real device on the bench.
    """

    def __init__(self, module: str, args: list[str], startup_s: float = 20.0, env: dict[str, str] | None = None
                 ) -> None:
        self.module = module
        self.args = args
        self.startup_s = startup_s
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self) -> SimulatorProcess:
        env = {**os.environ, **self.extra_env,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen([sys.executable, "-m", self.module, *self.args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.process = process
        assert process.stdout is not None and process.stderr is not None
        deadline = time.monotonic() + self.startup_s
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.1)
            if ready:
                line = process.stdout.readline()
                break
            if process.poll() is not None:
                break
        if not line.startswith(b"READY "):
            err = process.stderr.read().decode(errors="replace").strip().splitlines() \
                if process.poll() is not None else []
            self.stop()
            raise MulsenError(f"simulator {self.module} did not start: {err[-1] if err else 'no READY line'}")
        self.endpoint = line[6:].decode().strip()
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise MulsenError(f"simulator {self.module} is not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
