"""SVHN (Street View House Numbers, cropped digits) from the published ``train_32x32.mat`` and ``test_32x32.mat``.

MATLAB files with ``X`` of shape 32×32×3×N (uint8) and ``y`` of shape N×1 holding labels 1–10,
where 10 stands for the digit 0 (mapped to 0 here). Train = ``train_32x32.mat`` (73,257 images),
test = ``test_32x32.mat`` (26,032); ``extra`` is not used. SVHN is not in the official code and the
paper's SVHN resolution could not be read: 32×32 (native), as the same group's CoopFlow uses.
"""

from __future__ import annotations

import numpy as np

from pipeline.data import DataError, Prepared, resize_all
from pipeline.data.archives import Archive, expected_md5, locate

# URLs and MD5s as in torchvision.datasets.SVHN (torchvision 0.29.2).
TRAIN = Archive("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                url="http://ufldl.stanford.edu/housenumbers/train_32x32.mat")
TEST = Archive("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3",
               url="http://ufldl.stanford.edu/housenumbers/test_32x32.mat")


def read_mat(path, archive: Archive) -> tuple[np.ndarray, np.ndarray]:
    """One .mat file → (uint8 N×32×32×3, int64 labels 0–9)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError/OSError on damaged files
        raise DataError(f"{path} could not be read as a MATLAB file ({type(exc).__name__}: {exc}); delete it and "
                        f"download it again from {archive.url}") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} lacks 'X' or 'y': not an SVHN {archive.name}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise DataError(f"{path}: expected X uint8 H×W×3×N with N labels, "
                        f"found {x.dtype} {x.shape}, {len(y)} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels must be 1–10, found {y.min()}–{y.max()}")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), np.where(y == 10, 0, y)


def prepare(cfg: dict) -> Prepared:
    """Verify and decode both files; resize only when ``cfg['resolution']`` is not the native 32."""
    size = int(cfg["resolution"])
    (x_train, y_train), (x_test, y_test) = (read_mat(locate(a, cfg["raw_dir"], cfg["download"]), a)
                                            for a in (TRAIN, TEST))
    return Prepared(
        x_train=resize_all(x_train, size), y_train=y_train, x_test=resize_all(x_test, size), y_test=y_test,
        source=f"{TRAIN.name} (MD5 {expected_md5(TRAIN)}), {TEST.name} (MD5 {expected_md5(TEST)}) from "
               f"http://ufldl.stanford.edu/housenumbers/; labels 10 -> 0" + ("" if size == 32 else
                                                                             f", PIL bicubic to {size}"))
