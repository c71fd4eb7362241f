"""Typed records: round trips, and every bad file named by file and field in one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from mulsen.core.errors import ConfigError, DataFormatError
from mulsen.core.records import Record, to_plain
from mulsen.dataset.captures import ArmStep, CaptureRecord, CaptureSteps, ProgressRecord, SampleRequest


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    size: tuple[int, int]
    gain: float = 1.0

    def __post_init__(self) -> None:
        if self.gain <= 0:
            raise ConfigError(f"gain must be positive, got {self.gain}")


@dataclass(frozen=True)
class Example(Record):
    FORMAT = "test-example"
    VERSION = 2
    WHAT = "example"

    name: str
    inner: Inner
    items: tuple[Inner, ...] = ()
    table: dict[str, list[float]] = field(default_factory=dict)
    colour: Colour = Colour.RED
    mode: Literal["a", "b"] = "a"
    note: str | None = None

    @classmethod
    def migrate(cls, data: dict) -> dict:
        return {**{k: v for k, v in data.items() if k != "title"}, "name": data["title"], "format": cls.tag()}


def test_a_record_round_trips_through_its_file(tmp_path: Path):
    record = Example("x", Inner((3, 4), 2.5), (Inner((1, 2)),), {"a": [1.0, 2.5]}, Colour.BLUE, "b")
    path = record.write(tmp_path / "example.json")
    data = json.loads(path.read_text())
    assert data["format"] == "test-example/2" and "note" not in data  # a None at its default is left out
    assert Example.read(path) == record
    assert [p.name for p in tmp_path.iterdir()] == ["example.json"]  # written atomically, nothing left over


@pytest.mark.parametrize(("change", "message"), [
    ({"name": 5}, "name: expected str, got 5"),
    ({"inner": {"size": [1]}}, r"inner.size: expected 2 items, got 1"),
    ({"inner": {"size": [1, 2.5]}}, r"inner.size\[1\]: expected an integer, got 2.5"),
    ({"inner": {"size": [1, 2], "gain": -1}}, "inner: gain must be positive"),
    ({"inner": {"size": [1, 2], "gian": 1}}, "inner: unknown field gian"),
    ({"inner": {}}, "inner.size: missing"),
    ({"items": [{"size": [1, True]}]}, r"items\[0\].size\[1\]: expected an integer, got True"),
    ({"table": {"a": ["x"]}}, r"table.a\[0\]: expected a number, got 'x'"),
    ({"colour": "green"}, "colour: 'green' is not one of 'red', 'blue'"),
    ({"mode": "c"}, "mode: 'c' is not one of 'a', 'b'"),
    ({"note": 3}, "note: expected str or None"),
    ({"format": "test-example/3"}, "not a example file: format test-example/3, expected test-example/2"),
    ({"format": "other/2"}, "not a example file"),
])
def test_every_bad_field_is_named_with_the_file(tmp_path: Path, change: dict, message: str):
    data = {**Example("x", Inner((3, 4))).to_dict(), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=message) as caught:
        Example.read(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_unreadable_files_and_older_versions(tmp_path: Path):
    path = tmp_path / "e.json"
    with pytest.raises(DataFormatError, match="example file not found"):
        Example.read(path)
    path.write_text('{"format": "test-example/2", "name": ')
    with pytest.raises(DataFormatError, match="unreadable example file, not valid JSON"):
        Example.read(path)
    path.write_text(json.dumps({"format": "test-example/1", "title": "old", "inner": {"size": [1, 1]}}))
    assert Example.read(path).name == "old"  # the record's own migration


def test_to_plain_refuses_what_json_cannot_hold(tmp_path: Path):
    assert to_plain({"a": np.float32(1.5), "b": np.arange(3), "c": (1, Path("/x"))}) == \
        {"a": 1.5, "b": [0, 1, 2], "c": [1, "/x"]}
    with pytest.raises(DataFormatError, match="cannot be written: nan is not a JSON number"):
        Example("x", Inner((1, 1)), table={"a": [float("nan")]}).write(tmp_path / "nan.json")
    assert not list(tmp_path.iterdir())


def test_capture_records_keep_only_the_steps_done(tmp_path: Path):
    request = SampleRequest("nut", "001", part="nut:1")
    progress = ProgressRecord(request, "2026-01-01T00:00:00")
    arm = ArmStep("nominal geometry", (0.1, 0.2, 0.3, 3.14, 0.0, 0.0), part_ir_pixel=(320.0, 240.0))
    progress = ProgressRecord(request, progress.started, progress.steps.with_step("arm", arm))
    path = progress.write(tmp_path / "progress.json")
    assert list(json.loads(path.read_text())["steps"]) == ["arm"]
    assert ProgressRecord.read(path).steps.done() == ["arm"]
    record = CaptureRecord(request, "2026-01-01T00:01:00", "op", steps=CaptureSteps(arm=arm),
                           devices={"simulated_part": "nut:1"})
    assert CaptureRecord.read(record.write(tmp_path / "capture.json")).simulated_part == "nut:1"
    with pytest.raises(ConfigError, match=r"sample id '\.\./x' is not a valid folder name"):
        SampleRequest("nut", "../x")


def test_acquisition_summary_and_card_lines_count_each_setting(tmp_path):
    """The dataset card's acquisition section: each setting as the devices reported it, with its samples."""
    import json

    from mulsen.dataset.build import acquisition_summary
    from mulsen.dataset.captures import CaptureRecord, SampleRequest
    from mulsen.dataset.release import provenance_summary

    lockin = {"frequency_hz": 0.5, "periods": 4, "settle_periods": 1, "frame_rate_hz": 10.0, "power_percent": 80.0}
    camera = {"vendor": "FLIR", "model": "A6750", "serial_number": "77", "pixel_format": "Mono16",
              "settings": {"Width": 640, "Height": 512}}
    record = CaptureRecord(SampleRequest("nut", "1"), "2026-11-30T10:00:00+00:00", operator="ana",
                           devices={"ir_camera": camera, "heater": "LAB,HEATER,1,2.0"}, settings={"lockin": lockin})
    summary = acquisition_summary(record)
    assert summary == {"lock-in": "0.5 Hz, 4 periods + 1 settling, 80.0 % heater power, 10.0 fps",
                       "IR camera": "FLIR A6750 (serial 77), 640x512 Mono16", "heater": "LAB,HEATER,1,2.0"}
    log = tmp_path / "_provenance" / "nut.jsonl"
    log.parent.mkdir()
    entries = [{"sample": f"nut/train/{i}", "captured": f"2026-11-{28 + i}T10:00:00", "operator": op,
                "split_policy": "hash (test share of normals 0.25)", "acquisition": summary}
               for i, op in enumerate(["ana", "ana", "bo"])]
    entries[2]["acquisition"] = {**summary, "lock-in": "0.2 Hz, 4 periods + 1 settling, 80.0 % heater power, 10.0 fps"}
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    lines = provenance_summary(tmp_path)
    assert lines[0] == "- captured: 2026-11-28 to 2026-11-30 (3 of 3 samples dated)"
    assert lines[1] == "- operators: ana (2), bo (1)"
    assert lines[2] == "- split policy: hash (test share of normals 0.25) (3)"
    assert "- lock-in: 0.5 Hz, 4 periods + 1 settling, 80.0 % heater power, 10.0 fps (2); 0.2 Hz" in lines[3]
    assert "- IR camera: FLIR A6750 (serial 77), 640x512 Mono16 (3)" in lines
