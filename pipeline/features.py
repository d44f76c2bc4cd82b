"""A small classifier trained on a dataset's training split, whose penultimate layer gives the
features for fd_<dataset>/kid_<dataset> where Inception does not fit (8×8 → 16×16 grey digits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm


class Classifier(nn.Module):
    """Two conv blocks, a dense feature layer (``features``), and a linear head (``forward`` → logits).

    Input: float N×C×H×W in the uint8 range [0, 255], as the metric libraries hand images over.
    """

    def __init__(self, channels: int, size: int, width: int, feat_dim: int, n_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, feat_dim),
        )
        self.head = nn.Linear(feat_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # tanh: bounded, smooth features with a full-rank covariance (ReLU features are often 0).
        return torch.tanh(self.body(x / 127.5 - 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(channels: int, size: int, width: int, feat_dim: int, n_classes: int = 10) -> Classifier:
    """The feature classifier for images of ``channels``×``size``×``size``."""
    return Classifier(channels, size, width, feat_dim, n_classes)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float()


def train_classifier(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
    width: int, feat_dim: int, epochs: int, batch_size: int, lr: float, seed: int, progress: bool = True,
) -> tuple[dict, float]:
    """Train with Adam and cross-entropy (deterministic given ``seed`` on CPU); return (checkpoint, test accuracy).

    The checkpoint holds only tensors and plain values, so it loads with ``weights_only=True``.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    arch = {"channels": int(x_train.shape[3]), "size": int(x_train.shape[1]), "width": width,
            "feat_dim": feat_dim, "n_classes": int(max(y_train.max(), y_test.max()) + 1)}
    model = build_classifier(**arch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = _nchw(x_train), torch.from_numpy(y_train).long()
    for _ in tqdm(range(epochs), desc="classifier", unit="epoch", disable=not progress):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            # Random 1-pixel shifts: cheap augmentation that makes the features robust to small offsets.
            sx, sy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            xb = torch.roll(xt[idx], shifts=(sx, sy), dims=(2, 3))
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(_nchw(x_test)).argmax(1) == torch.from_numpy(y_test)).float().mean().item()
    return {"format": 1, "arch": arch, "state_dict": model.state_dict(), "test_accuracy": acc}, acc


def load_classifier(path: str | Path) -> Classifier:
    """Load a classifier checkpoint (``weights_only=True``) in eval mode, without gradients."""
    path = Path(path)
    fix = "Rerun the classifier stage (python -m pipeline classifier --dataset <dataset>)."
    if not path.exists():
        raise RuntimeError(f"feature classifier {path} not found. {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = build_classifier(**ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # unpickling, missing keys, shape mismatch: all mean "not our checkpoint"
        raise RuntimeError(f"{path} is not a feature-classifier checkpoint of this pipeline ({exc}). {fix}") from exc
    model.eval().requires_grad_(False)
    return model


def predict(model: Classifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class of each uint8 N×H×W×C image (the classifier's argmax)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model(_nchw(images[i:i + batch_size])).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)
