"""Typed, versioned JSON records: one dataclass per file the toolkit writes or reads.

A record class names its format (``FORMAT = "mulsen-capture"``) and version (``VERSION = 1``); its file
carries ``"format": "mulsen-capture/1"``. Reading checks the tag, every field's type (nested dataclasses,
``list``/``tuple``/``dict``, ``X | None``, ``Literal``, enums), unknown and missing fields, and names the file
and the field in a one-line ``DataFormatError``. Writing is atomic. One writer per record: its ``write``.

Why our own and not pydantic: the records are plain dataclasses shared with pure functions (no runtime
dependency, frozen, numpy-free) and the checks needed are only JSON types; this module is their
whole schema engine, about 150 lines.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .atomic import atomic_write_text
from .errors import DataFormatError
from .files import read_input

MAX_RECORD_BYTES = 256 << 20  # a JSON record larger than this is refused unread (no record comes near it)

R = TypeVar("R", bound="Record")
_HINTS: dict[type, dict[str, Any]] = {}


class RecordError(ValueError):
    """A value does not fit its field; ``where`` is the field path (``steps.arm.start_pose[2]``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)

    def __reduce__(self):  # survive a trip from a worker process (the message is the whole record)
        return RecordError, ("", str(self))


class _WrongFormat(RecordError):
    def __init__(self, problem: str) -> None:
        super().__init__("", problem)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def to_plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses as dicts (fields at a None default left out), tuples as lists, enums by
    value, paths as strings, numpy scalars and arrays as Python numbers and lists. Non-finite floats are
    refused (JSON has none)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a None that is the default is left out
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (getattr(value, f.name) is None and f.default is None)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return to_plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError("", f"{value} is not a JSON number")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise RecordError("", f"{type(value).__name__} is not JSON data")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def from_plain(hint: Any, value: Any, where: str = "") -> Any:
    """``value`` (parsed JSON) checked against the type ``hint`` and converted (lists to tuples, dicts to
    dataclasses, values to enums)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return from_plain(option, value, where)
            except RecordError as exc:
                problems.append(str(exc))
        raise RecordError(where, f"expected {' or '.join(_type_name(o) for o in options)}, got {value!r:.60}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise RecordError(where, f"{value!r:.60} is not one of {', '.join(map(repr, typing.get_args(hint)))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecordError(where, f"expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise RecordError(where, f"expected {len(args)} items, got {len(value)}")
            return tuple(from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [from_plain(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(where, f"expected an object, got {type(value).__name__}")
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: from_plain(item, v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_from_plain(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise RecordError(where, f"{value!r:.60} is not one of {', '.join(repr(m.value) for m in hint)}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(where, f"expected a number, got {value!r:.60}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(where, f"expected an integer, got {value!r:.60}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise RecordError(where, f"expected {_type_name(hint)}, got {value!r:.60}")
        return value
    raise TypeError(f"unsupported record field type {hint!r}")  # a programming error, not a data error


def _dataclass_from_plain(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise RecordError(where, f"expected an object, got {type(value).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields) - {"format"})
    if unknown:
        raise RecordError(where, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    hints, kwargs = _hints(cls), {}
    for name, field in fields.items():
        path = f"{where}.{name}" if where else name
        if name in value:
            kwargs[name] = from_plain(hints[name], value[name], path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RecordError(path, "missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # the dataclass's own __post_init__ validation
        raise RecordError(where, str(exc)) from None


class Record:
    """Base of the toolkit's file records (to be combined with ``@dataclass``)."""

    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    WHAT: ClassVar[str] = "record"  # for messages: "not a capture record"

    @classmethod
    def tag(cls) -> str:
        return f"{cls.FORMAT}/{cls.VERSION}"

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.tag(), **to_plain(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn an older version's fields into this version's (override where older files exist)."""
        raise _WrongFormat(f"{data.get('format')} is an older {cls.WHAT} format this toolkit cannot read "
                           f"(expects {cls.tag()})")

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        if not isinstance(data, dict):
            raise RecordError("", f"expected a JSON object, got {type(data).__name__}")
        found = data.get("format")
        if found != cls.tag():
            prefix = f"{cls.FORMAT}/"
            if isinstance(found, str) and found.startswith(prefix) and found[len(prefix):].isdigit() \
                    and int(found[len(prefix):]) < cls.VERSION:
                data = cls.migrate(data)
            else:
                raise _WrongFormat(f"not a {cls.WHAT} file: format {found}, expected {cls.tag()}")
        return _dataclass_from_plain(cls, data, "")

    @classmethod
    def from_json(cls: type[R], text: str | bytes, source: str | Path = "<record>") -> R:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataFormatError(source, f"unreadable {cls.WHAT} file, not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except _WrongFormat as exc:
            raise DataFormatError(source, str(exc)) from None
        except RecordError as exc:
            raise DataFormatError(source, f"{cls.WHAT}: {exc}") from None

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        path = Path(path)
        return cls.from_json(read_input(path, f"{cls.WHAT} file", MAX_RECORD_BYTES), path)

    def write(self, path: str | Path, overwrite: bool = True) -> Path:
        try:
            text = self.to_json()
        except RecordError as exc:
            raise DataFormatError(path, f"{self.WHAT} cannot be written: {exc}") from None
        atomic_write_text(path, text + "\n", overwrite=overwrite)
        return Path(path)
