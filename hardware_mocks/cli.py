"""``mulsen sim ...``: the virtual world and device simulators."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="virtual world and device simulators")
    sim.set_defaults(handler=lambda args: sim.print_help() or 2)
