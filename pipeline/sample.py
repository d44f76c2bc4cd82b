"""Sampling: VAE ancestral sample → Langevin revision on the EBM → uint8 images, and grid pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from pipeline.langevin import revise
from pipeline.teaching import propose


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[−1, 1] N×C×H×W → uint8 N×H×W×C as the official code: clip((x + 1)·127.5) then truncate."""
    x = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def to_float(x: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×H×W in [−1, 1] (x/127.5 − 1, as the official loader)."""
    return torch.from_numpy(x).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()


def generate(
    models: dict[str, nn.Module],
    n: int,
    chunk: int,
    z_dim: int,
    langevin: dict | None,
    generator: torch.Generator,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``n`` VAE samples (``vae``) and, when ``langevin`` is given, their revisions (``revised``).

    The generator's BatchNorm uses batch statistics (official quirk), so samples are drawn in
    chunks of the batch size seen in training and a short last chunk is drawn full and cut.
    """
    device = next(models["decoder"].parameters()).device
    out: dict[str, list[np.ndarray]] = {"vae": []}
    if langevin is not None:
        out["revised"] = []
    for m in models.values():
        m.train()  # official: BN on batch statistics at test time too; no dropout in these nets
    for start in tqdm(range(0, n, chunk), desc="sample", unit="batch", disable=not progress):
        x = propose(models["decoder"], chunk, z_dim, generator, device)
        keep = min(chunk, n - start)
        out["vae"].append(to_uint8(x[:keep]))
        if langevin is not None:
            x = revise(models["ebm"], x, langevin["test_steps"], langevin["step_size"], langevin["ref_sigma"],
                       langevin["noise"], generator)
            out["revised"].append(to_uint8(x[:keep]))
    return {k: np.concatenate(v) for k, v in out.items()}


def save_grid(path: str | Path, panels: dict[str, np.ndarray], n: int = 100) -> None:
    """Save a PNG with one grid of the first ``n`` images per panel (uint8 N×H×W×C), titled, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import write_with

    side = int(np.sqrt(n))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, imgs) in zip(axes[0], panels.items()):
        ax.imshow(_tile(imgs[: side * side], side), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)


def _tile(imgs: np.ndarray, side: int, pad: int = 1) -> np.ndarray:
    n, h, w, c = imgs.shape
    canvas = np.full((side * (h + pad) + pad, side * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, side)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = imgs[i]
    return canvas[..., 0] if c == 1 else canvas
