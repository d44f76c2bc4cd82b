"""scikit-learn's handwritten digits: the embedded dataset that runs anywhere offline.

1,797 real 8×8 grey images (values 0–16) shipped inside scikit-learn (UCI optdigits test set).
They are upsampled 2× bilinearly to 16×16 by default: the paper's ``cifar`` nets halve the
resolution three times and end with a convolution over the remaining (s/8)×(s/8) map, so at 8×8
every late layer would collapse to a 1×1 map (a dense layer); 16×16 keeps each layer spatial while
costing 4× less than 32×32 on a CPU. Upsampling adds no information: the images are still the data.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from pipeline.data import Prepared


def prepare(cfg: dict) -> Prepared:
    """Load the digits, rescale 0–16 → 0–255, resize to ``cfg['resolution']`` and split.

    The split is stratified by label and fixed by ``cfg['split_seed']``.
    """
    bunch = load_digits()
    images = bunch.images.astype(np.float32) * (255.0 / 16.0)  # (N, 8, 8)
    size = int(cfg["resolution"])
    if size != images.shape[1]:
        t = torch.from_numpy(images)[:, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        images = t[:, 0].numpy()
    x = np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None]  # N×H×W×1
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=float(cfg["test_fraction"]), random_state=int(cfg["split_seed"]), stratify=y
    )
    return Prepared(
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        source=f"sklearn.datasets.load_digits (scikit-learn {__import__('sklearn').__version__}; "
        f"UCI optdigits, 8x8, 0-16), bilinear to {size}x{size}",
    )
