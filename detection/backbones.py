"""Pretrained feature networks of MulSen-TripleAD in pure torch: DINO ViT-B/8 and the Point-MAE encoder.

Both load the published weight files from a local path (nothing is downloaded) with a strict key
check that names missing keys, unlike the original code's silent ``strict=False``. Both run in
eval mode by default: the original keeps Point-MAE in train mode, which makes its features stochastic
(DropPath active, BatchNorm on per-cloud statistics); ``train_mode=True`` (the paper preset) does the same.

- ViT: the timm ``vit_base_patch8_224.dino`` layout (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``); the original DINO release
  (``dino_vitbase8_pretrain.pth``) uses the same names. Output: last-layer patch tokens after the final
  norm, 28 x 28 x 768 at 224 x 224 (ImageNet normalisation; gray IR replicated to 3 channels).
- Point-MAE: the ``pointmae_pretrain.pth`` layout (weights under ``base_model``; ``module.``,
  ``MAE_encoder.`` and ``base_model.`` prefixes stripped). Groups: farthest point sampling of 1024
  centres from index 0, 128 nearest neighbours each; output blocks 3, 7, 11 through the final norm,
  concatenated to 1152-d. Unlike the original, the cloud is by default centred and scaled to the unit
  sphere, the frame Point-MAE was trained in (documented deviation; ``frame="centred"`` as the original).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mulsen.core.errors import MulsenError

from .features import RANDOM_WEIGHTS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SOURCES = {
    "vit_base_patch8_224.dino": "the timm/vit_base_patch8_224.dino model.safetensors (Hugging Face) or "
                                "dino_vitbase8_pretrain.pth from the DINO release",
    "point_mae": "pointmae_pretrain.pth from the Point-MAE release (ShapeNet pretraining)",
}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise MulsenError("pretrained backbones need torch (pip install mulsen-toolkit[detect])") from exc
    return torch


def resolve_device(name: str) -> str:
    torch = _torch()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MulsenError("--device cuda: no CUDA device is available")
    return name


def read_state_dict(path: str | Path) -> dict:
    """Tensors from a .safetensors file or a torch checkpoint loaded with ``weights_only=True``."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise MulsenError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MulsenError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from None
    for key in ("base_model", "model", "state_dict", "teacher"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise MulsenError(f"{path}: no state dict inside")
    return state


def load_strict(module, state: dict, prefixes: tuple[str, ...], source: str | Path, ignore: tuple[str, ...] = ()):
    """Load ``state`` after stripping ``prefixes``; every module key must be present with its shape."""
    cleaned = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    own = module.state_dict()
    missing = [k for k in own if k not in cleaned]
    wrong = [f"{k} {tuple(cleaned[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in cleaned and tuple(cleaned[k].shape) != tuple(v.shape)]
    if missing or wrong:
        shown = (missing + wrong)[:5]
        raise MulsenError(f"{source}: does not fit the network: {len(missing)} missing and {len(wrong)} mis-shaped "
                          f"tensors (e.g. {', '.join(shown)})")
    unexpected = [k for k in cleaned if k not in own and not k.startswith(ignore)]
    module.load_state_dict({k: cleaned[k] for k in own}, strict=True)
    return unexpected


def _modules():
    torch = _torch()
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
            super().__init__()
            self.heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, c = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1)) * self.scale
            return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c))

    class Mlp(nn.Module):
        def __init__(self, dim: int, hidden: int) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    def drop_path(x, rate: float, training: bool):
        """Stochastic depth (in train mode only): each sample's residual branch dropped with ``rate``, kept ones
        scaled by 1 / (1 - rate)."""
        if not training or rate <= 0:
            return x
        keep = 1.0 - rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int, qkv_bias: bool, eps: float, drop_path_rate: float = 0.0) -> None:
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), Attention(dim, heads, qkv_bias)
            self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), Mlp(dim, dim * 4)
            self.drop_path_rate = drop_path_rate

        def forward(self, x):
            x = x + drop_path(self.attn(self.norm1(x)), self.drop_path_rate, self.training)
            return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)

    class PatchEmbed(nn.Module):
        def __init__(self, patch: int, dim: int) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class VisionTransformer(nn.Module):
        def __init__(self, image: int = 224, patch: int = 8, dim: int = 768, depth: int = 12, heads: int = 12):
            super().__init__()
            self.grid = image // patch
            self.patch_embed = PatchEmbed(patch, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
            self.blocks = nn.ModuleList([Block(dim, heads, True, 1e-6) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)

        def forward(self, x):
            x = self.patch_embed(x)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.norm(x)[:, 1:]  # patch tokens

    class PointEncoder(nn.Module):  # mini-PointNet, names as in Point-MAE
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                            nn.Conv1d(128, 256, 1))
            self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                             nn.Conv1d(512, channels, 1))

        def forward(self, groups):  # (B, G, K, 3)
            b, g, k, _ = groups.shape
            x = self.first_conv(groups.reshape(b * g, k, 3).transpose(2, 1))
            pooled = x.max(dim=2, keepdim=True)[0]
            x = self.second_conv(torch.cat([pooled.expand(-1, -1, k), x], dim=1))
            return x.max(dim=2)[0].reshape(b, g, -1)

    class TransformerStack(nn.Module):
        def __init__(self, dim: int, depth: int, heads: int, drop_path_rate: float = 0.1) -> None:
            super().__init__()
            rates = np.linspace(0, drop_path_rate, depth)  # Point-MAE's: rising linearly over the blocks
            self.blocks = nn.ModuleList([Block(dim, heads, False, 1e-5, float(r)) for r in rates])

    class PointMAE(nn.Module):
        def __init__(self, dim: int = 384, depth: int = 12, heads: int = 6, fetch: tuple[int, ...] = (3, 7, 11)):
            super().__init__()
            self.fetch = fetch
            self.encoder = PointEncoder(dim)
            self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
            self.blocks = TransformerStack(dim, depth, heads)
            self.norm = nn.LayerNorm(dim)

        def forward(self, groups, centres):
            x, pos = self.encoder(groups), self.pos_embed(centres)
            out = []
            for index, block in enumerate(self.blocks.blocks):
                x = block(x + pos)
                if index in self.fetch:
                    out.append(self.norm(x))
            return torch.cat(out, dim=-1)

    return VisionTransformer, PointMAE


def vision_transformer():
    return _modules()[0]()


def point_mae():
    return _modules()[1]()


def _network(factory, weights: str, prefixes: tuple[str, ...], ignore: tuple[str, ...], device: str,
             train_mode: bool = False):
    """``factory()`` with the local checkpoint's weights ("random": seeded initialisation, for timing), in eval
    mode (or train mode, as the official code leaves Point-MAE) on ``device``. The global torch seed is set to
    0 as the official code's ``set_seeds(0)``: train mode's DropPath draws from it."""
    _torch().manual_seed(0)
    model = factory()
    if weights != RANDOM_WEIGHTS:
        load_strict(model, read_state_dict(weights), prefixes, weights, ignore=ignore)
    return (model.train() if train_mode else model.eval()).to(device)


@dataclass
class ViTExtractor:
    """DINO ViT-B/8 patch tokens for RGB and IR images."""

    weights: str  # a file path, or "random" (timing only: random initialisation, seeded)
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.model = _network(vision_transformer, self.weights, ("module.", "backbone."), ("head", "fc_norm"),
                              self.device)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """(784, 768) float32 patch features and the (28, 28) grid."""
        torch = _torch()
        from PIL import Image

        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        resized = np.asarray(Image.fromarray(rgb).resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255.0
        normalised = (resized - IMAGENET_MEAN) / IMAGENET_STD
        tensor = torch.from_numpy(normalised.transpose(2, 0, 1)[None].astype(np.float32)).to(self.device)
        with torch.inference_mode():
            tokens = self.model(tensor)[0]
        grid = self.model.grid
        return tokens.float().cpu().numpy(), (grid, grid)


def farthest_point_sample(points: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` farthest points, starting at index 0 (as pointnet2_ops does)."""
    torch = _torch()
    cloud = torch.from_numpy(np.asarray(points, np.float64) - np.mean(points, axis=0))
    squared = (cloud * cloud).sum(dim=1)
    chosen = np.zeros(count, np.int64)
    distance = torch.full((len(cloud),), float("inf"), dtype=torch.float64)
    current = 0
    for k in range(count):
        chosen[k] = current
        # |p - c|^2 = |p|^2 - 2 p.c + |c|^2: one matrix-vector product per step
        step = torch.addmv(squared + squared[current], cloud, cloud[current], alpha=-2.0)
        torch.minimum(distance, step, out=distance)
        current = int(torch.argmax(distance))
    return chosen


@dataclass
class PointMAEExtractor:
    weights: str
    device: str = "cpu"
    groups: int = 1024
    group_size: int = 128
    frame: str = "unit_sphere"  # or "centred": centred only, in the input's units (the official code)
    train_mode: bool = False  # the official code's: DropPath active, BatchNorm on each cloud's statistics

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.model = _network(point_mae, self.weights, ("module.", "base_model.", "MAE_encoder."),
                              ("MAE_decoder", "decoder", "mask_token", "increase_dim", "cls"), self.device,
                              self.train_mode)

    def __call__(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(groups, 1152) float32 features and the group centres (in the input frame, mm)."""
        torch = _torch()
        from scipy.spatial import cKDTree

        points = np.asarray(vertices, np.float64)
        centre = points.mean(axis=0)
        scale = (np.linalg.norm(points - centre, axis=1).max() or 1.0) if self.frame == "unit_sphere" else 1.0
        unit = (points - centre) / scale
        count = min(self.groups, len(unit))
        centres = unit[farthest_point_sample(unit, count)]
        _, neighbours = cKDTree(unit).query(centres, k=min(self.group_size, len(unit)))
        groups = unit[neighbours] - centres[:, None, :]
        # train mode updates BatchNorm's running statistics in place: no_grad, not inference_mode
        with torch.no_grad() if self.train_mode else torch.inference_mode():
            features = self.model(torch.from_numpy(groups[None].astype(np.float32)).to(self.device),
                                  torch.from_numpy(centres[None].astype(np.float32)).to(self.device))[0]
        return features.float().cpu().numpy(), centres * scale + centre


@dataclass
class RandomConvExtractor:
    """Weight-free candidate: a randomly initialised (seeded, He-normal) conv stack, PatchCore-style features.

    Layers 2 and 3 (strides 4 and 8) are locally averaged (3x3) and concatenated on the stride-4 grid,
    as PatchCore aggregates a pretrained network's mid-level maps; nothing is trained or downloaded.
    """

    work_width: int = 256
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        torch = _torch()
        nn = torch.nn
        generator = torch.Generator().manual_seed(self.seed)
        self.layers = nn.ModuleList([nn.Conv2d(3, 32, 3, 2, 1), nn.Conv2d(32, 64, 3, 2, 1),
                                     nn.Conv2d(64, 128, 3, 2, 1)])
        for layer in self.layers:
            with torch.no_grad():
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                                   * np.sqrt(2.0 / layer.weight[0].numel()))
                layer.bias.zero_()
        self.device = resolve_device(self.device)
        self.layers.eval().to(self.device)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        torch = _torch()
        functional = torch.nn.functional
        from PIL import Image

        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        height = max(16, round(rgb.shape[0] * self.work_width / rgb.shape[1]))
        resized = np.asarray(Image.fromarray(rgb).resize((self.work_width, height), Image.Resampling.BILINEAR),
                             np.float32)
        normalised = (resized / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        x = torch.from_numpy(normalised.transpose(2, 0, 1)[None].astype(np.float32)).to(self.device)
        maps = []
        with torch.inference_mode():
            for layer in self.layers:
                x = functional.relu(layer(x))
                maps.append(x)
            mid, deep = (functional.avg_pool2d(m, 3, 1, 1) for m in maps[1:])
            deep = functional.interpolate(deep, size=mid.shape[-2:], mode="bilinear", align_corners=False)
            features = torch.cat([mid, deep], dim=1)[0]
        rows, cols = features.shape[-2:]
        return features.permute(1, 2, 0).reshape(rows * cols, -1).cpu().numpy(), (rows, cols)
