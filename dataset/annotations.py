"""Annotation import: LabelMe JSON -> pixel-exact masks, point selections -> per-vertex labels.

Our own parser and PIL rasteriser reproduce ``labelme.utils.shape_to_mask`` / ``shapes_to_label``
pixel for pixel (polygon fill includes the outline, rectangles cover (w+1)(h+1) pixels, circles by
radius to the rim point, lines and line strips 10 px wide, points radius 5, ``mask`` shapes pasted
into their box, later shapes over earlier ones). Every LabelMe version from the 2018 files (no
``shape_type``, colour keys) to 5.x (``description``, ``mask``) is accepted.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np
from PIL import Image, ImageDraw

from mulsen.core.errors import DataFormatError
from mulsen.core.files import read_input

IGNORE_LABEL = "__ignore__"
BACKGROUND_LABEL = "_background_"
SHAPE_POINTS = {"rectangle": 2, "circle": 2, "line": 2, "point": 1, "mask": 2}
SHAPE_TYPES = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "oriented_rectangle", "mask",
               "rotation", "quadrilateral")  # the last two: X-AnyLabeling's rotated boxes and 4-point shapes
MAX_IMAGE_SIDE = 1 << 16
# LabelMe's own examples carry polygon points up to 0.4 px beyond the image border (a click on the edge of
# a zoomed canvas); drawing clips those by a fraction of a pixel, which is harmless
EDGE_SLACK = 1.0


@dataclass
class Shape:
    label: str
    points: np.ndarray  # (K, 2) x, y
    shape_type: str
    group_id: int | None = None
    mask: np.ndarray | None = None  # for shape_type "mask": bool (y2-y1+1, x2-x1+1)


@dataclass
class LabelmeDocument:
    path: Path
    version: str
    shapes: list[Shape]
    image_path: str | None
    image_size: tuple[int, int] | None  # (height, width) as declared
    image_data: bytes | None = None
    flags: dict = field(default_factory=dict)

    def image_file(self) -> Path | None:
        if not self.image_path:
            return None
        return self.path.parent / PureWindowsPath(self.image_path).as_posix()

    def size(self, check_image: bool = True) -> tuple[int, int]:
        """(height, width): declared, else from the image file, else from the embedded image; checked."""
        actual, source = None, None
        image = self.image_file()
        try:
            if self.image_data:  # LabelMe itself prefers the embedded image
                source = "imageData"
                with Image.open(io.BytesIO(self.image_data)) as handle:
                    actual = (handle.height, handle.width)
            elif check_image and image is not None and image.is_file():
                source = str(image)
                with Image.open(image) as handle:
                    actual = (handle.height, handle.width)
        except OSError as exc:
            raise DataFormatError(self.path, f"cannot read the image {source} ({exc})") from None
        if self.image_size and actual and self.image_size != actual:
            raise DataFormatError(self.path, f"declares a {self.image_size[1]}x{self.image_size[0]} image but "
                                             f"{source} is {actual[1]}x{actual[0]}")
        size = self.image_size or actual
        if size is None:
            raise DataFormatError(self.path, "no image size: neither imageHeight/imageWidth, nor a readable image")
        return size


def _decode_mask(path: Path, text: str, index: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(base64.b64decode(text))) as image:
            return np.asarray(image).astype(bool)
    except Exception as exc:
        raise DataFormatError(path, f"shape {index}: undecodable mask ({exc})") from None


def read_labelme(path: str | Path) -> LabelmeDocument:
    """Parse a LabelMe JSON file (any version); malformed content is a one-line error naming the file."""
    path = Path(path)
    try:
        data = json.loads(read_input(path, "LabelMe file").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataFormatError(path, "not a LabelMe file (no 'shapes' list)")
    shapes = []
    for index, raw in enumerate(data["shapes"]):
        if not isinstance(raw, dict) or "label" not in raw or not raw.get("points"):
            raise DataFormatError(path, f"shape {index}: needs a label and points")
        shape_type = raw.get("shape_type") or "polygon"  # the 2018 files have no shape_type
        if shape_type not in SHAPE_TYPES:
            raise DataFormatError(path, f"shape {index} ({raw['label']}): unknown shape_type {shape_type!r} "
                                        f"(LabelMe draws {', '.join(SHAPE_TYPES)})")
        try:
            points = np.asarray(raw["points"], dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2:
                raise ValueError("not pairs")
        except (TypeError, ValueError):
            raise DataFormatError(path, f"shape {index} ({raw['label']}): points are not [x, y] pairs") from None
        if not np.all(np.isfinite(points)):
            raise DataFormatError(path, f"shape {index} ({raw['label']}): a point is NaN or infinite")
        if shape_type in ("rotation", "quadrilateral"):  # four corners in drawing order: a polygon
            shape_type = "polygon"
        elif shape_type == "rectangle" and len(points) == 4:
            # X-AnyLabeling >= 2.4 stores a rectangle as its 4 corners; an axis-aligned one is the box of its
            # corners, a turned one is the polygon it outlines
            xs, ys = np.unique(points[:, 0]), np.unique(points[:, 1])
            if len(xs) <= 2 and len(ys) <= 2:
                points = np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]])
            else:
                shape_type = "polygon"
        needed = SHAPE_POINTS.get(shape_type)
        if needed is not None and len(points) != needed:
            raise DataFormatError(path, f"shape {index} ({raw['label']}): a {shape_type} needs {needed} points, "
                                        f"got {len(points)}")
        if shape_type in ("polygon", "oriented_rectangle") and len(points) < 3:
            raise DataFormatError(path, f"shape {index} ({raw['label']}): a polygon needs more than 2 points")
        if shape_type == "linestrip" and len(points) < 2:
            raise DataFormatError(path, f"shape {index} ({raw['label']}): a linestrip needs 2 or more points")
        mask = None
        if shape_type == "mask":
            if not raw.get("mask"):
                raise DataFormatError(path, f"shape {index} ({raw['label']}): mask shape without mask data")
            mask = _decode_mask(path, raw["mask"], index)
        shapes.append(Shape(str(raw["label"]), points, shape_type, raw.get("group_id"), mask))
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if (height is not None or width is not None) and not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_IMAGE_SIDE for v in (height, width)):
        raise DataFormatError(path, f"imageHeight/imageWidth must be positive integers up to {MAX_IMAGE_SIDE}, "
                                    f"got {height!r}/{width!r}")
    image_data = None
    if data.get("imageData"):
        try:
            image_data = base64.b64decode(str(data["imageData"]), validate=True)
        except (binascii.Error, ValueError):
            raise DataFormatError(path, "imageData is not valid base64") from None
    image_path = data.get("imagePath")
    if image_path is not None and not isinstance(image_path, str):
        raise DataFormatError(path, f"imagePath must be a string, got {type(image_path).__name__}")
    return LabelmeDocument(path, str(data.get("version", "")), shapes, image_path,
                           (height, width) if height and width else None, image_data,
                           data.get("flags") or {})


def check_inside(document: LabelmeDocument, size: tuple[int, int]) -> None:
    """Every shape lies on the image, give or take ``EDGE_SLACK`` pixels: a point farther off is an error,
    never silently clipped; a mask bitmap must fill its box."""
    height, width = size
    lo, hi_x, hi_y = -EDGE_SLACK, width + EDGE_SLACK, height + EDGE_SLACK
    for index, shape in enumerate(document.shapes):
        if shape.shape_type == "circle":
            (cx, cy), (px, py) = shape.points
            radius = math.hypot(cx - px, cy - py)
            corners = np.array([[cx - radius, cy - radius], [cx + radius, cy + radius]])
        else:
            corners = shape.points
        outside = (corners[:, 0] < lo) | (corners[:, 0] > hi_x) | (corners[:, 1] < lo) | (corners[:, 1] > hi_y)
        if outside.any():
            x, y = corners[int(np.argmax(outside))]
            raise DataFormatError(document.path, f"shape {index} ({shape.label}): point ({x:g}, {y:g}) lies off the "
                                                 f"{width}x{height} image")
        if shape.shape_type == "mask":
            assert shape.mask is not None  # the parser decodes every mask shape's bitmap
            (x1, y1), (x2, y2) = shape.points.astype(int)
            if shape.mask.shape != (y2 - y1 + 1, x2 - x1 + 1):
                raise DataFormatError(document.path, f"shape {index} ({shape.label}): mask bitmap is "
                                                     f"{shape.mask.shape[1]}x{shape.mask.shape[0]}, its box "
                                                     f"{x2 - x1 + 1}x{y2 - y1 + 1}")


def shape_mask(size: tuple[int, int], shape: Shape, line_width: int = 10, point_size: int = 5) -> np.ndarray:
    """The pixels one shape covers (bool, ``size`` = (height, width)), exactly as LabelMe draws them."""
    height, width = size
    if shape.shape_type == "mask":
        assert shape.mask is not None  # the parser decodes every mask shape's bitmap
        (x1, y1), (x2, y2) = shape.points.astype(int)
        out = np.zeros(size, dtype=bool)
        region = out[y1:y2 + 1, x1:x2 + 1]
        region[...] = shape.mask[: region.shape[0], : region.shape[1]]
        return out
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in shape.points.tolist()]
    kind = shape.shape_type
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy=xy, fill=1, width=line_width)
    elif kind == "point":
        cx, cy = xy[0]
        draw.ellipse([cx - point_size, cy - point_size, cx + point_size, cy + point_size], outline=1, fill=1)
    elif kind in ("polygon", "oriented_rectangle"):
        draw.polygon(xy=xy, outline=1, fill=1)
    else:
        raise ValueError(f"shape_type={kind!r} is not supported")
    return np.asarray(canvas, dtype=bool)


def shapes_to_label(document: LabelmeDocument, label_values: dict[str, int], size: tuple[int, int] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Class and instance maps (int32); instances keyed by (label, group_id); later shapes win."""
    size = size or document.size()
    check_inside(document, size)
    classes = np.zeros(size, np.int32)
    instances = np.zeros(size, np.int32)
    keys: list = []
    for k, shape in enumerate(document.shapes):
        if shape.label not in label_values:
            raise DataFormatError(document.path, f"label {shape.label!r} is not in the label list")
        key = (shape.label, shape.group_id if shape.group_id is not None else f"shape-{k}")
        if key not in keys:
            keys.append(key)
        pixels = shape_mask(size, shape)
        classes[pixels] = label_values[shape.label]
        instances[pixels] = keys.index(key) + 1
    return classes, instances


def defect_mask(document: LabelmeDocument, size: tuple[int, int] | None = None) -> tuple[np.ndarray, set[str]]:
    """The union of every defect shape (``__ignore__`` and ``_background_`` excluded) and its labels."""
    size = size or document.size()
    check_inside(document, size)
    mask = np.zeros(size, dtype=bool)
    labels = set()
    for shape in document.shapes:
        if shape.label in (IGNORE_LABEL, BACKGROUND_LABEL):
            continue
        mask |= shape_mask(size, shape)
        labels.add(shape.label)
    return mask, labels


def point_selection_labels(vertices: np.ndarray, selected: np.ndarray, tolerance_mm: float,
                           source: str | Path = "point selection") -> np.ndarray:
    """Per-vertex labels of a mesh from selected points (Geomagic export): each must match a vertex."""
    from scipy.spatial import cKDTree

    labels = np.zeros(len(vertices), dtype=bool)
    if len(selected) == 0:
        return labels
    distance, index = cKDTree(vertices).query(np.asarray(selected, float))
    unmatched = distance > tolerance_mm
    if unmatched.any():
        worst = np.asarray(selected)[unmatched][0]
        raise DataFormatError(source, f"{int(unmatched.sum())} of {len(selected)} selected points match no vertex "
                                      f"within {tolerance_mm} mm (first: {np.round(worst, 4).tolist()})")
    labels[index] = True
    return labels
