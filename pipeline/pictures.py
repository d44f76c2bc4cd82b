"""Every PNG grid of images the stages write (samples, completion, reconstruction, interpolation,
Langevin trajectories): the one module that draws pictures of images. Algorithm modules return
arrays; stages hand them here. Writes are atomic (``pipeline.atomic.write_with``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def save_grid(path: str | Path, panels: dict[str, np.ndarray], n: int = 100, cols: int | None = None,
              title: str | None = None) -> None:
    """Save a PNG with one grid of the first ``n`` images per panel (uint8 N×H×W×C), titled, side by side.

    ``cols`` images per row (default: a square grid, √n); rows follow from the image count, so a
    panel of P paths × S steps with ``cols = S`` shows one path per row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.atomic import write_with

    if cols is None:  # square grid (the samples picture: 10 x 10)
        cols = rows = int(np.sqrt(n))
    else:
        rows = max(1, math.ceil(min(n, max(len(v) for v in panels.values())) / cols))
    aspect = rows / cols
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.4 + 4.2 * aspect), squeeze=False)
    for ax, (name, imgs) in zip(axes[0], panels.items()):
        ax.imshow(_tile(imgs[: rows * cols], rows, cols), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)


def _tile(imgs: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """``imgs`` (N×H×W×C uint8, N ≤ rows·cols) on a white canvas, row by row."""
    n, h, w, c = imgs.shape
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = imgs[i]
    return canvas[..., 0] if c == 1 else canvas
