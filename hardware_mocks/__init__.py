"""The virtual world (parts with planted defects) and protocol-level simulators of every device.

Only tests, benchmarks and the ``--sim`` entry points import this package (see the layering contract)."""

from typing import TYPE_CHECKING

from mulsen.core.lazy import lazy_exports

if TYPE_CHECKING:
    from .devices import SimBench, running_simulators
    from .processes import SimulatorProcess
    from .sim_cameras import BenchPart
    from .world.generate import GenerationConfig, generate_dataset

_EXPORTS = {
    "GenerationConfig": "world.generate",
    "generate_dataset": "world.generate",
    "SimBench": "devices",
    "running_simulators": "devices",
    "BenchPart": "sim_cameras",
    "SimulatorProcess": "processes",
}
__all__ = [
    "BenchPart", "GenerationConfig", "SimBench", "SimulatorProcess", "generate_dataset", "running_simulators",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
