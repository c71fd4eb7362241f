"""Simulated annotators: what a human would save for each modality of a planted defect."""

from __future__ import annotations

from pathlib import PurePosixPath

import cv2
import numpy as np


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a binary mask as (K, 2) pixel polygons (x, y), as traced in LabelMe."""
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(float) for c in contours]


def labelme_document(masks: dict[str, np.ndarray], image_path: str, image_size: tuple[int, int]) -> dict:
    """A LabelMe 5.x document with one polygon per connected region of each labelled mask.

    ``image_size`` is (width, height); ``image_path`` is stored relative to the JSON, POSIX style.
    Regions too thin to trace as a polygon (fewer than 3 contour points) become lines or points.
    """
    shapes = []
    for label, mask in masks.items():
        for poly in mask_polygons(mask):
            shape_type = "polygon" if len(poly) >= 3 else ("line" if len(poly) == 2 else "point")
            shapes.append({"label": label, "points": poly.tolist(), "group_id": None, "description": "",
                           "shape_type": shape_type, "flags": {}, "mask": None})
    width, height = image_size
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": str(PurePosixPath(image_path)),
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}
