"""Pixel conversions between stored uint8 images and the nets' float range, as the official code does them.

The official loader scales uint8 to float32 by x/127.5 − 1; its image writer and its FID code map floats
back by clip((x + 1)·127.5, 0, 255) and truncate to uint8. In float32 that round trip is not the
identity: 63 of the 256 grey levels come back one lower (tests/test_stages.py). An FID that passes only
the samples through it compares them with reference images a quarter of a grey level brighter on
average, so the FID protocols (params.yaml ``score.protocols``) say whether the reference goes through
the same conversion (``official_roundtrip``).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[−1, 1] N×C×H×W → uint8 N×H×W×C as the official code: clip((x + 1)·127.5) then truncate."""
    x = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def to_float(x: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [−1, 1] (x/127.5 − 1, as the official loader)."""
    return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def official_roundtrip(images: np.ndarray, chunk: int = 10_000) -> np.ndarray:
    """uint8 N×H×W×C images as the official FID code sees real images: loaded to float32, then ``to_uint8``.

    Chunked so that 50,000 CIFAR-size images never sit in memory as float32 at once.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"official_roundtrip takes uint8 N×H×W×C images, got {images.dtype} {images.shape}")
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = to_uint8(to_float(images[start:start + chunk]))
    return out
