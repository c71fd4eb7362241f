"""Laser-scanner exports (VXelements, PCL and friends): read and write STL, PLY, OBJ, PCD and ASCII point files.

open3d silently returns an empty geometry for a missing, empty or comma-separated file, and pypcd4 1.5
refuses the VERSION .5 PCD files PCL itself still ships and reads, so the readers here are our own (numpy;
LZF from python-neo-lzf) and raise a one-line error naming the file instead. Vertices come back as
float64 in the file's unit; faces, normals, colours, intensity and the sensor viewpoint when the file has
them; what was tolerated is listed in ``Scan.notes``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mulsen.core.atomic import atomic_path
from mulsen.core.errors import DataFormatError
from mulsen.core.files import check_input, read_input
from mulsen.dataset.meshio import read_stl, write_stl
from mulsen.dataset.records import Mesh

logger = logging.getLogger(__name__)
SCAN_SUFFIXES = (".stl", ".ply", ".obj", ".pcd", ".xyz", ".asc", ".txt", ".csv", ".pts")
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
    colors: np.ndarray | None = None  # (N, 3) uint8 RGB
    intensity: np.ndarray | None = None  # (N,) float64
    viewpoint: np.ndarray | None = None  # (3,) where the sensor was, in the scan's frame (PCD VIEWPOINT)
    notes: list[str] = field(default_factory=list)  # what the reader tolerated (skipped faces, dropped NaNs)

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
    elif suffix == ".pcd":
        scan = _read_pcd(path)
    else:
        scan = _read_ascii_points(path)
    if len(scan.vertices) == 0:
        raise DataFormatError(path, "the file holds no points")
    if not np.all(np.isfinite(scan.vertices)):
        raise DataFormatError(path, "non-finite coordinates")
    if scan.faces is not None and len(scan.faces) and (scan.faces.min() < 0 or scan.faces.max() >= len(scan.vertices)):
        raise DataFormatError(path, "a face refers to a vertex that does not exist")
    for note in scan.notes:  # what was tolerated reaches the user (merge, detect, the export watcher)
        logger.warning("%s: %s", path, note)
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
            name = words[4] if words[1] == "list" else words[2]
            if any(name == existing for existing, _, _ in elements[-1].properties):
                raise DataFormatError(path, f"PLY header line {number}: element {elements[-1].name} lists "
                                            f"property {name!r} twice")
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
def _obj_lines(text: str):
    """(first line number, logical line): a line ending in a backslash continues on the next one."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _read_obj(path: Path) -> Scan:
    vertices: list[list[float]] = []
    normals: list[list[float]] = []
    polygons: list[list[int]] = []
    skipped: list[int] = []
    for number, line in _obj_lines(read_input(path, "OBJ scan").decode("latin-1")):
        words = line.split()
        if not words:
            continue
        if words[0] in ("v", "vn"):
            try:
                if len(words) < 4:
                    raise ValueError("three coordinates needed")
                (vertices if words[0] == "v" else normals).append([float(w) for w in words[1:4]])
            except ValueError:
                raise DataFormatError(path, f"line {number}: malformed {words[0]!r} record") from None
        elif words[0] == "f":
            # one bad face is one bad face: skipped and reported, the rest of the mesh is kept
            try:
                polygon = [int(w.split("/")[0]) for w in words[1:]]
            except ValueError:
                polygon = []
            if len(polygon) < 3 or any(i == 0 or abs(i) > len(vertices) for i in polygon):
                skipped.append(number)
                continue
            polygons.append([i - 1 if i > 0 else len(vertices) + i for i in polygon])
    if skipped and not polygons:
        raise DataFormatError(path, f"no usable face: every 'f' record is malformed or points nowhere "
                                    f"(line {skipped[0]} first)")
    vertex_array = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    faces = _triangulate(path, polygons) if polygons else None
    normal_array = np.array(normals, dtype=np.float64).reshape(-1, 3) if len(normals) == len(vertices) and normals \
        else None
    notes = [f"skipped {len(skipped)} malformed face(s) (line {', '.join(map(str, skipped[:5]))}"
             f"{', ...' if len(skipped) > 5 else ''})"] if skipped else []
    return Scan(vertex_array, faces, normal_array, path, "obj", notes=notes)


# -- PCD (PCL) ------------------------------------------------------------------------------------------
_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
MAX_PCD_POINTS = 1 << 28


def _pcd_header(path: Path, data: bytes) -> tuple[dict[str, list[str]], int]:
    header: dict[str, list[str]] = {}
    position = 0
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        line = data[position:end].decode("latin-1").strip()
        position = end + 1
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0].upper() not in _PCD_KEYS:
            raise DataFormatError(path, f"not a PCD header line: {line[:60]!r}")
        header[words[0].upper()] = words[1:]
        if words[0].upper() == "DATA":
            return header, position
    raise DataFormatError(path, "PCD header has no DATA line (not a PCD file, or truncated)")


def _pcd_int(path: Path, header: dict[str, list[str]], key: str, default: int | None = None) -> int:
    words = header.get(key)
    if not words:
        if default is None:
            raise DataFormatError(path, f"PCD header lacks {key}")
        return default
    try:
        value = int(words[0])
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_PCD_POINTS:
        raise DataFormatError(path, f"PCD {key} {words[0]!r} is not a count up to {MAX_PCD_POINTS}")
    return value


def _read_pcd(path: Path) -> Scan:
    data = read_input(path, "PCD scan")
    header, body = _pcd_header(path, data)
    names = header.get("FIELDS", [])
    sizes, types = header.get("SIZE", []), header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(names))
    if not names or not (len(names) == len(sizes) == len(types) == len(counts)):
        raise DataFormatError(path, f"PCD header: FIELDS, SIZE, TYPE and COUNT must list the same number of "
                                    f"entries (got {len(names)}, {len(sizes)}, {len(types)}, {len(counts)})")
    width, height = _pcd_int(path, header, "WIDTH"), _pcd_int(path, header, "HEIGHT", 1)
    points = _pcd_int(path, header, "POINTS", width * height)
    if points != width * height:
        raise DataFormatError(path, f"PCD header: POINTS {points} is not WIDTH x HEIGHT = {width * height}")
    fields = []
    for k, (name, size, kind, count) in enumerate(zip(names, sizes, types, counts, strict=True)):
        code = {"F": "f", "U": "u", "I": "i"}.get(kind.upper())
        if code is None or size not in (("4", "8") if code == "f" else ("1", "2", "4", "8")) or not count.isdigit() \
                or int(count) < 1:
            raise DataFormatError(path, f"PCD field {name!r}: unsupported SIZE {size} TYPE {kind} COUNT {count}")
        # PCL pads with fields named '_'; a repeated name must not clash in the record type
        fields.append((name if names.index(name) == k else f"{name}#{k}", f"<{code}{size}", (int(count),)))
    dtype = np.dtype(fields)
    mode = (header.get("DATA") or [""])[0].lower()
    if mode == "ascii":
        tokens = data[body:].split()
        per_row = sum(int(c) for c in counts)
        if len(tokens) < points * per_row:
            raise DataFormatError(path, f"PCD ascii data is truncated ({len(tokens) // max(per_row, 1)} of "
                                        f"{points} points)")
        try:
            flat = np.array(tokens[:points * per_row], dtype=np.float64).reshape(points, per_row)
        except ValueError:
            raise DataFormatError(path, "PCD ascii data has a non-numeric value") from None
        table = np.empty(points, dtype)
        column = 0
        for name in dtype.names or ():
            n = dtype[name].shape[0]
            table[name] = flat[:, column:column + n].astype(dtype[name].base)
            column += n
    elif mode == "binary":
        if len(data) - body < points * dtype.itemsize:
            raise DataFormatError(path, f"PCD binary data is truncated ({(len(data) - body) // dtype.itemsize} of "
                                        f"{points} points)")
        table = np.frombuffer(data, dtype, points, body)
    elif mode == "binary_compressed":
        table = _pcd_compressed(path, data, body, dtype, points)
    else:
        raise DataFormatError(path, f"unknown PCD DATA {mode!r} (ascii, binary or binary_compressed)")
    with np.errstate(invalid="ignore"):  # signalling NaNs in a float32 field warn when widened
        return _pcd_scan(path, header, table, width, height, mode)


def _pcd_compressed(path: Path, data: bytes, body: int, dtype: np.dtype, points: int) -> np.ndarray:
    """binary_compressed: two little-endian uint32 sizes, then LZF data holding the fields column after column."""
    try:
        import lzf
    except ImportError:  # pragma: no cover - python-neo-lzf is a core dependency
        raise DataFormatError(path, "binary_compressed PCD needs the python-neo-lzf package") from None
    if len(data) - body < 8:
        raise DataFormatError(path, "PCD binary_compressed data is truncated (no sizes)")
    packed, unpacked = (int(v) for v in np.frombuffer(data, "<u4", 2, body))
    if unpacked != points * dtype.itemsize or len(data) - body - 8 < packed:
        raise DataFormatError(path, f"PCD binary_compressed sizes do not fit: {packed} bytes packed of "
                                    f"{len(data) - body - 8} present, {unpacked} unpacked for {points} points "
                                    f"of {dtype.itemsize} bytes")
    try:
        raw = lzf.decompress(data[body + 8:body + 8 + packed], unpacked) if unpacked else b""
    except ValueError:
        raw = None
    if raw is None or len(raw) != unpacked:
        raise DataFormatError(path, "PCD binary_compressed data does not decompress (corrupt)")
    table = np.empty(points, dtype)
    offset = 0
    for name in dtype.names or ():
        column = np.dtype((dtype[name].base, dtype[name].shape))
        table[name] = np.frombuffer(raw, column, points, offset)
        offset += column.itemsize * points
    return table


def _pcd_scan(path: Path, header: dict[str, list[str]], table: np.ndarray, width: int, height: int,
              mode: str) -> Scan:
    def scalar(name: str) -> np.ndarray | None:
        return table[name][:, 0] if name in (table.dtype.names or ()) else None

    xyz = [scalar(k) for k in "xyz"]
    if any(c is None for c in xyz):
        raise DataFormatError(path, f"PCD has no x/y/z fields (fields: {', '.join(table.dtype.names or ())})")
    vertices = np.stack(xyz, axis=1).astype(np.float64)  # type: ignore[arg-type]
    valid = np.all(np.isfinite(vertices), axis=1)  # organised clouds mark missing returns with NaN
    notes = [] if valid.all() else [f"dropped {int((~valid).sum())} of {len(valid)} points without a return (NaN)"]
    normal_parts = [scalar(f"normal_{k}") for k in "xyz"]
    normals = None if any(c is None for c in normal_parts) else \
        np.stack(normal_parts, axis=1).astype(np.float64)[valid]  # type: ignore[arg-type]
    colors = None
    for name in ("rgb", "rgba"):
        packed = scalar(name)
        if packed is not None:  # PCL packs 0x00RRGGBB into a float32 or uint32
            bits = np.ascontiguousarray(packed).view(np.uint32) if packed.dtype.itemsize == 4 else \
                packed.astype(np.uint32)
            colors = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)[valid]
            break
    intensity = scalar("intensity")
    viewpoint = None
    if header.get("VIEWPOINT"):
        try:
            viewpoint = np.array([float(v) for v in header["VIEWPOINT"][:3]])
        except ValueError:
            raise DataFormatError(path, f"PCD VIEWPOINT is not numeric: {' '.join(header['VIEWPOINT'])}") from None
    shape = f", {width}x{height} organised" if height > 1 and width > 1 else ""
    return Scan(vertices[valid], None, normals, path, f"pcd ({mode}{shape})", colors,
                None if intensity is None else intensity.astype(np.float64)[valid], viewpoint, notes)


# -- ASCII point lists ----------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[\s]*[-+]?(\d|\.\d|nan|inf)", re.IGNORECASE)
_COLUMN_NAMES = {
    "x": "x", "y": "y", "z": "z", "nx": "nx", "ny": "ny", "nz": "nz", "normal_x": "nx", "normal_y": "ny",
    "normal_z": "nz", "r": "r", "g": "g", "b": "b", "red": "r", "green": "g", "blue": "b", "i": "i",
    "intensity": "i", "reflectance": "i", "scalar_intensity": "i",
}


def sniff_delimiter(lines: list[str]) -> str | None:
    """',', ';' or tab when every sampled data line splits into >= 3 fields on it; else whitespace (None)."""
    for delimiter in (",", ";", "\t"):
        if lines and all(len(line.split(delimiter)) >= 3 for line in lines):
            return delimiter
    return None


def _header_names(line: str) -> list[str]:
    """Column names of a header line ('//X Y Z R G B', 'x,y,z (mm)', 'X;Y;Z;NX;NY;NZ'), units dropped."""
    return [w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"\([^)]*\)|\[[^]]*\]", " ", line))]


def _column_roles(path: Path, names: list[str] | None, table: np.ndarray) -> dict[str, int]:
    """Which column is x, y, z, nx.., r, g, b, i: from the header's names when there is one, else from the
    column count, with normals only where every row is a unit vector and colours only where they are whole
    numbers 0-255. A count that leaves the meaning open is refused, never guessed."""
    width = table.shape[1]
    if names is not None:
        roles = {_COLUMN_NAMES[n]: k for k, n in enumerate(names) if n in _COLUMN_NAMES}
        if not all(k in roles for k in "xyz"):
            raise DataFormatError(path, f"the header names no x, y, z columns ({' '.join(names)})")
        return roles

    def unit(cols: slice) -> bool:
        return bool(np.allclose(np.linalg.norm(table[:, cols], axis=1), 1, atol=2e-3))

    def colour(cols: slice) -> bool:
        part = table[:, cols]
        return bool(np.all((part >= 0) & (part <= 255) & (part == np.round(part))))

    layouts: dict[int, list[dict[str, int]]] = {
        3: [{}], 4: [{"i": 3}], 6: [{"nx": 3}, {"r": 3}], 7: [{"i": 3, "r": 4}],
        9: [{"r": 3, "nx": 6}, {"nx": 3, "r": 6}], 10: [{"i": 3, "r": 4, "nx": 7}]}
    for layout in layouts.get(width, []):
        if ("nx" not in layout or unit(slice(layout["nx"], layout["nx"] + 3))) and \
                ("r" not in layout or colour(slice(layout["r"], layout["r"] + 3))):
            roles = {"x": 0, "y": 1, "z": 2, **{k: v for k, v in layout.items() if k == "i"}}
            for first, names3 in (("nx", ("nx", "ny", "nz")), ("r", ("r", "g", "b"))):
                if first in layout:
                    roles.update({n: layout[first] + j for j, n in enumerate(names3)})
            return roles
    raise DataFormatError(path, f"{width} columns without a header line naming them: add one (e.g. 'x y z nx ny nz' "
                                "or 'x y z r g b'); normals and colours are not guessed")


def _read_ascii_points(path: Path) -> Scan:
    text = read_input(path, "point file").decode("latin-1")
    lines = text.splitlines()
    rows, header, counts = [], None, []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if _NUMBER.match(stripped):
            if re.fullmatch(r"\d+", stripped):  # PTS: a block's point count on its own line
                counts.append(int(stripped))
            else:
                rows.append(stripped)
        elif not rows:
            names = _header_names(stripped.lstrip("#/"))
            if sum(n in _COLUMN_NAMES for n in names) >= 3:
                header = names
    if not rows:
        return Scan(np.zeros((0, 3)), None, None, path, "ascii points")
    if counts and sum(counts) != len(rows):
        raise DataFormatError(path, f"the point-count line(s) announce {sum(counts)} points but {len(rows)} follow "
                                    "(truncated?)")
    delimiter = sniff_delimiter(rows[:50])
    try:
        table = np.array([[float(v) for v in (row.split(delimiter) if delimiter else row.split())] for row in rows])
    except ValueError:
        raise DataFormatError(path, "a point line has a non-numeric value") from None
    if table.ndim != 2 or table.shape[1] < 3:
        raise DataFormatError(path, "point lines must have at least 3 columns (x y z) and the same count each")
    if header is not None and len(header) != table.shape[1]:
        raise DataFormatError(path, f"the header names {len(header)} columns ({' '.join(header)}) but the point "
                                    f"lines have {table.shape[1]}")
    roles = _column_roles(path, header, table)

    def columns(keys: tuple[str, ...]) -> np.ndarray | None:
        return table[:, [roles[k] for k in keys]] if all(k in roles for k in keys) else None

    normals = columns(("nx", "ny", "nz"))
    rgb = columns(("r", "g", "b"))
    if rgb is not None:
        rgb = np.round(rgb * 255 if rgb.max() <= 1 and not np.all(rgb == np.round(rgb)) else rgb)
        if rgb.min() < 0 or rgb.max() > 255:
            raise DataFormatError(path, "colour columns must be 0-255 (or 0-1)")
    intensity = table[:, roles["i"]] if "i" in roles else None
    name = {",": "comma", ";": "semicolon", "\t": "tab"}.get(delimiter or " ", "space")
    kind = "pts" if counts else "ascii points"
    vertices = table[:, [roles["x"], roles["y"], roles["z"]]]
    return Scan(vertices, None, normals, path, f"{kind} ({name}-separated)",
                None if rgb is None else rgb.astype(np.uint8), intensity)


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
