"""``mulsen demo``: the end-to-end demo on the simulators."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the end-to-end demo on the simulators")
    demo.add_argument("--out", default="demo_out")
    demo.set_defaults(handler=lambda args: 0)
