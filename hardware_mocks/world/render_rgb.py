"""RGB renderer: perspective top view, Lambertian shading under two line lights, sensor noise, Bayer."""

from __future__ import annotations

import numpy as np

from .scene import DownCamera, Scene, trace

LIGHT_ELEVATION_DEG = 50.0
AMBIENT = 0.35


def surface_normals(scene: Scene, u: np.ndarray, v: np.ndarray, step: float = 0.02) -> np.ndarray:
    """Unit normals (..., 3) of the shaded height field in the bench frame."""
    dhdu = (scene.height(u + step, v, True) - scene.height(u - step, v, True)) / (2 * step)
    dhdv = (scene.height(u, v + step, True) - scene.height(u, v - step, True)) / (2 * step)
    c, s = np.cos(scene.part.yaw_rad), np.sin(scene.part.yaw_rad)
    gx, gy = c * dhdu - s * dhdv, s * dhdu + c * dhdv
    n = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def render_rgb(scene: Scene, camera: DownCamera, rng: np.random.Generator, noise_dn: float = 1.5,
               bayer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return (image, defect mask): uint8 (H, W, 3) — or (H, W) BayerRG8 — and the exact RGB defect mask."""
    hit = trace(scene, camera, shaded_only=True)
    normals = surface_normals(scene, hit.u, hit.v)
    el = np.deg2rad(LIGHT_ELEVATION_DEG)
    lights = np.array([[np.cos(el), 0.0, np.sin(el)], [-np.cos(el), 0.0, np.sin(el)]])
    diffuse = np.clip(normals @ lights.T, 0, None).sum(-1) * 0.5
    radiance = scene.albedo(hit.u, hit.v) * (AMBIENT + (1 - AMBIENT) * diffuse)[..., None] * scene.part.light_gain
    image = np.clip(radiance ** (1 / 2.2) * 255 + rng.normal(0, noise_dn, radiance.shape), 0, 255)
    image = np.round(image).astype(np.uint8)
    mask = scene.region(hit.u, hit.v, "rgb")
    if bayer:
        return mosaic_rg(image), mask
    return image, mask


def mosaic_rg(rgb: np.ndarray) -> np.ndarray:
    """RGB -> BayerRG8 raw (R at even row/even column), as a GenICam BayerRG8 camera delivers."""
    raw = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1]
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return raw
