"""Laser-scanner exports (VXelements and friends): read and write STL, PLY, OBJ and ASCII point files.

open3d silently returns an empty geometry for a missing, empty or comma-separated file, so the
readers here are our own (numpy) and raise a one-line error naming the file instead. Vertices come
back as float64 millimetres; faces and normals when the file has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulsen.core.atomic import atomic_path
from mulsen.core.errors import DataFormatError
from mulsen.core.files import check_input, read_input
from mulsen.dataset.meshio import read_stl, write_stl
from mulsen.dataset.records import Mesh

SCAN_SUFFIXES = (".stl", ".ply", ".obj", ".xyz", ".asc", ".txt", ".csv", ".pts")
WRITE_FORMATS = ("stl", "stl_ascii", "ply", "ply_ascii", "obj", "xyz", "csv")

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class Scan:
    """One scanner export: points (mm) plus faces/normals when present."""

    vertices: np.ndarray  # (N, 3) float64
    faces: np.ndarray | None = None  # (F, 3) int64
    normals: np.ndarray | None = None  # (N, 3)
    path: Path | None = None
    format: str = ""

    @property
    def mesh(self) -> Mesh | None:
        return Mesh(self.vertices, self.faces) if self.faces is not None and len(self.faces) else None


def read_scan(path: str | Path) -> Scan:
    """Read a scan file by its suffix; refuse empty or malformed files with the reason."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCAN_SUFFIXES:
        raise DataFormatError(path, f"unsupported scan format {suffix!r} (supported: {', '.join(SCAN_SUFFIXES)})")
    check_input(path, "scan file")
    if suffix == ".stl":
        mesh = read_stl(path)
        scan = Scan(mesh.vertices, mesh.faces, None, path, "stl")
    elif suffix == ".ply":
        scan = _read_ply(path)
    elif suffix == ".obj":
        scan = _read_obj(path)
    else:
        scan = _read_ascii_points(path)
    if len(scan.vertices) == 0:
        raise DataFormatError(path, "the file holds no points")
    if not np.all(np.isfinite(scan.vertices)):
        raise DataFormatError(path, "non-finite coordinates")
    if scan.faces is not None and len(scan.faces) and (scan.faces.min() < 0 or scan.faces.max() >= len(scan.vertices)):
        raise DataFormatError(path, "a face refers to a vertex that does not exist")
    return scan


# -- PLY ------------------------------------------------------------------------------------------
MAX_PLY_ELEMENTS = 1 << 28  # a header claiming more is corrupt (and would ask for gigabytes)
@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]]  # (name, value type, list-count type or None)


def _ply_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataFormatError(path, "not a PLY file (no 'ply' magic or no end_header)")
    body_start = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    fmt, elements = "", []
    for number, raw in enumerate(data[:end].decode("latin-1").splitlines()[1:], 2):
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        needed = {"format": 2, "element": 3, "property": 5 if words[1:2] == ["list"] else 3}.get(words[0], 0)
        if len(words) < needed:
            raise DataFormatError(path, f"PLY header line {number} is incomplete: {raw.strip()!r}")
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            try:
                count = int(words[2])
            except ValueError:
                count = -1
            if not 0 <= count <= MAX_PLY_ELEMENTS:
                raise DataFormatError(path, f"PLY header line {number}: element count {words[2]!r} is not a "
                                            f"count up to {MAX_PLY_ELEMENTS}")
            elements.append(_Element(words[1], count, []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1].properties.append((words[4], _ply_type(path, words[3]), _ply_type(path, words[2])))
            else:
                elements[-1].properties.append((words[2], _ply_type(path, words[1]), None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataFormatError(path, f"unknown PLY format {fmt!r}")
    return fmt, elements, body_start


def _ply_type(path: Path, name: str) -> str:
    if name not in _PLY_TYPES:
        raise DataFormatError(path, f"unknown PLY property type {name!r}")
    return _PLY_TYPES[name]


def _read_ply(path: Path) -> Scan:
    data = read_input(path, "PLY scan")
    fmt, elements, offset = _ply_header(path, data)
    values: dict[str, dict[str, np.ndarray]] = {}
    if fmt == "ascii":
        tokens = data[offset:].split()
        position = 0
        for element in elements:
            values[element.name], position = _ply_ascii_element(path, element, tokens, position)
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        for element in elements:
            values[element.name], offset = _ply_binary_element(path, element, data, offset, order)
    vertex = values.get("vertex", {})
    if not all(k in vertex for k in "xyz"):
        raise DataFormatError(path, "PLY has no vertex x/y/z properties")
    vertices = np.stack([vertex[k] for k in "xyz"], axis=1).astype(np.float64)
    normals = np.stack([vertex[k] for k in ("nx", "ny", "nz")], axis=1) if all(
        k in vertex for k in ("nx", "ny", "nz")) else None
    faces = None
    face = values.get("face", {})
    lists = [v for k, v in face.items() if k in ("vertex_indices", "vertex_index")]
    if lists and len(lists[0]):
        faces = _triangulate(path, lists[0])
    return Scan(vertices, faces, normals, path, f"ply ({fmt})")


def _ply_ascii_element(path: Path, element: _Element, tokens: list[bytes], position: int):
    has_list = any(count_type for _, _, count_type in element.properties)
    if not has_list:
        width = len(element.properties)
        end = position + width * element.count
        if end > len(tokens):
            raise DataFormatError(path, f"PLY element {element.name} is truncated ({element.count} rows declared)")
        try:
            table = np.array(tokens[position:end], dtype=np.float64).reshape(element.count, width)
        except ValueError:
            raise DataFormatError(path, f"PLY element {element.name} has a non-numeric value") from None
        return {name: table[:, k] for k, (name, _, _) in enumerate(element.properties)}, end
    out: dict[str, list] = {name: [] for name, _, _ in element.properties}
    try:
        for _ in range(element.count):
            for name, _, count_type in element.properties:
                if count_type:
                    n = int(tokens[position])
                    out[name].append([int(v) for v in tokens[position + 1:position + 1 + n]])
                    position += 1 + n
                else:
                    out[name].append(float(tokens[position]))
                    position += 1
    except (IndexError, ValueError):
        raise DataFormatError(path, f"PLY element {element.name} is truncated or malformed") from None
    return {k: (v if any(c for n, _, c in element.properties if n == k) else np.array(v)) for k, v in out.items()}, \
        position


def _ply_binary_element(path: Path, element: _Element, data: bytes, offset: int, order: str):
    if not any(count_type for _, _, count_type in element.properties):
        dtype = np.dtype([(name, order + kind) for name, kind, _ in element.properties])
        if offset + dtype.itemsize * element.count > len(data):
            raise DataFormatError(path, f"PLY element {element.name} is truncated ({element.count} rows declared)")
        table = np.frombuffer(data, dtype, count=element.count, offset=offset)
        return {name: table[name] for name in dtype.names or ()}, offset + dtype.itemsize * element.count
    if element.count == 0:
        return {name: [] for name, _, _ in element.properties}, offset
    # Lists: assume every row has the first row's counts (triangle meshes), check, else walk row by row.
    fields, position = [], offset
    try:
        for name, kind, count_type in element.properties:
            if count_type:
                n = int(np.frombuffer(data, order + count_type, 1, position)[0])
                fields += [(f"{name}#n", order + count_type), (name, order + kind, (n,))]
                position += np.dtype(count_type).itemsize + n * np.dtype(kind).itemsize
            else:
                fields.append((name, order + kind))
                position += np.dtype(kind).itemsize
        dtype = np.dtype(fields)
        if offset + dtype.itemsize * element.count <= len(data):
            table = np.frombuffer(data, dtype, count=element.count, offset=offset)
            counts_ok = all(np.all(table[f"{name}#n"] == dtype[name].shape[0])
                            for name, _, count_type in element.properties if count_type)
            if counts_ok:
                return {name: table[name] for name, _, _ in element.properties}, offset + dtype.itemsize * element.count
        return _ply_binary_rows(path, element, data, offset, order)
    except (ValueError, IndexError):
        raise DataFormatError(path, f"PLY element {element.name} is truncated or malformed") from None


def _ply_binary_rows(path: Path, element: _Element, data: bytes, offset: int, order: str):
    out: dict[str, list] = {name: [] for name, _, _ in element.properties}
    for _ in range(element.count):
        for name, kind, count_type in element.properties:
            if count_type:
                n = int(np.frombuffer(data, order + count_type, 1, offset)[0])
                offset += np.dtype(count_type).itemsize
                out[name].append(np.frombuffer(data, order + kind, n, offset).tolist())
                offset += n * np.dtype(kind).itemsize
            else:
                out[name].append(np.frombuffer(data, order + kind, 1, offset)[0])
                offset += np.dtype(kind).itemsize
    return out, offset


def _triangulate(path: Path, polygons) -> np.ndarray:
    """Faces as an (F, 3) array; polygons with more corners become triangle fans."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polygons = polygons.astype(np.int64)
        if polygons.shape[1] == 3:
            return polygons
        return np.concatenate([polygons[:, [0, k, k + 1]] for k in range(1, polygons.shape[1] - 1)])
    triangles = []
    for polygon in polygons:
        if len(polygon) < 3:
            raise DataFormatError(path, f"a face has {len(polygon)} corners")
        triangles += [(polygon[0], polygon[k], polygon[k + 1]) for k in range(1, len(polygon) - 1)]
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


# -- OBJ --------------------------------------------------------------------------------------------
def _read_obj(path: Path) -> Scan:
    vertices: list[list[float]] = []
    normals: list[list[float]] = []
    polygons: list[list[int]] = []
    for number, line in enumerate(read_input(path, "OBJ scan").decode("latin-1").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        try:
            if words[0] in ("v", "vn"):
                if len(words) < 4:
                    raise ValueError("three coordinates needed")
                (vertices if words[0] == "v" else normals).append([float(w) for w in words[1:4]])
            elif words[0] == "f":
                polygons.append([int(w.split("/")[0]) for w in words[1:]])
                if any(i == 0 or abs(i) > len(vertices) for i in polygons[-1]):
                    raise DataFormatError(path, f"line {number}: a face refers to a vertex that does not exist")
        except ValueError:
            raise DataFormatError(path, f"line {number}: malformed {words[0]!r} record") from None
    vertex_array = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    resolved = [[i - 1 if i > 0 else len(vertices) + i for i in polygon] for polygon in polygons]
    faces = _triangulate(path, resolved) if resolved else None
    normal_array = np.array(normals, dtype=np.float64).reshape(-1, 3) if len(normals) == len(vertices) and normals \
        else None
    return Scan(vertex_array, faces, normal_array, path, "obj")


# -- ASCII point lists ----------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[\s]*[-+]?(\d|\.\d)")


def sniff_delimiter(lines: list[str]) -> str | None:
    """',', ';' or tab when every sampled data line splits into >= 3 fields on it; else whitespace (None)."""
    for delimiter in (",", ";", "\t"):
        if lines and all(len(line.split(delimiter)) >= 3 for line in lines):
            return delimiter
    return None


def _read_ascii_points(path: Path) -> Scan:
    text = read_input(path, "point file").decode("latin-1")
    rows = [line for line in text.splitlines() if _NUMBER.match(line)]  # skips headers and comments
    if not rows:
        return Scan(np.zeros((0, 3)), None, None, path, "ascii points")
    delimiter = sniff_delimiter(rows[:50])
    try:
        table = np.array([[float(v) for v in (row.split(delimiter) if delimiter else row.split())] for row in rows])
    except ValueError:
        raise DataFormatError(path, "a point line has a non-numeric value") from None
    if table.ndim != 2 or table.shape[1] < 3:
        raise DataFormatError(path, "point lines must have at least 3 columns (x y z) and the same count each")
    normals = table[:, 3:6] if table.shape[1] >= 6 else None
    name = {",": "comma", ";": "semicolon", "\t": "tab"}.get(delimiter or " ", "space")
    return Scan(table[:, :3].copy(), None, normals, path, f"ascii points ({name}-separated)")


# -- writers (the scanner simulator and round-trip tests) ------------------------------------------------
def write_scan(path: str | Path, vertices: np.ndarray, faces: np.ndarray | None, fmt: str,
               overwrite: bool = False) -> None:
    """Write a scan in ``fmt`` (one of WRITE_FORMATS) atomically."""
    path = Path(path)
    vertices = np.asarray(vertices, dtype=np.float64)
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown scan format {fmt!r}")
    if fmt == "stl":
        if faces is None:
            raise ValueError("an STL scan needs faces")
        write_stl(path, Mesh(vertices, faces), overwrite=overwrite)
        return
    with atomic_path(path, overwrite=overwrite) as tmp:
        if fmt == "stl_ascii":
            tri = vertices[faces]
            normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
            with open(tmp, "w") as out:
                out.write("solid scan\n")
                for n, t in zip(normal, tri, strict=True):
                    out.write(f"  facet normal {n[0]:.6e} {n[1]:.6e} {n[2]:.6e}\n    outer loop\n")
                    for v in t:
                        out.write(f"      vertex {v[0]:.9e} {v[1]:.9e} {v[2]:.9e}\n")
                    out.write("    endloop\n  endfacet\n")
                out.write("endsolid scan\n")
        elif fmt in ("ply", "ply_ascii"):
            _write_ply(tmp, vertices, faces, binary=fmt == "ply")
        elif fmt == "obj":
            with open(tmp, "w") as out:
                out.write("# scan export\n")
                np.savetxt(out, vertices, fmt="v %.6f %.6f %.6f")
                if faces is not None:
                    np.savetxt(out, np.asarray(faces) + 1, fmt="f %d %d %d")
        else:
            np.savetxt(tmp, vertices, fmt="%.6f", delimiter="," if fmt == "csv" else " ",
                       header="x,y,z (mm)" if fmt == "csv" else "", comments="")


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray | None, binary: bool) -> None:
    faces = np.zeros((0, 3), np.int64) if faces is None else np.asarray(faces)
    header = ("ply\nformat " + ("binary_little_endian" if binary else "ascii") + " 1.0\ncomment scan export\n"
              f"element vertex {len(vertices)}\nproperty double x\nproperty double y\nproperty double z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    with open(path, "wb") as out:
        out.write(header.encode("ascii"))
        if binary:
            out.write(vertices.astype("<f8").tobytes())
            rows = np.zeros(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
            rows["n"], rows["v"] = 3, faces
            out.write(rows.tobytes())
        else:
            np.savetxt(out, vertices, fmt="%.6f")
            np.savetxt(out, faces, fmt="3 %d %d %d")
