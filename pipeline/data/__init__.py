"""Datasets: locate the real data, decode it to uint8 N×H×W×C, write the prepared file.

Nothing here knows about models. Each dataset module exposes ``prepare(cfg) -> Prepared``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.atomic import all_or_none, write_json, write_npz

PREPARED_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Prepared:
    """A decoded dataset: uint8 images N×H×W×C and int64 labels, with where they came from.

    ``meta``: what else the manifest records (checksums verified, the order of the images); written only
    when not empty, so the manifests of the datasets without it keep their bytes.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    meta: dict = field(default_factory=dict)


class DataError(RuntimeError):
    """A dataset file is missing, corrupt, or not what the pipeline expects."""


def save_prepared(prepared: Prepared, npz_path: str | Path, manifest_path: str | Path) -> None:
    """Write the prepared arrays and a JSON manifest (source, shapes, sha256 of the npz)."""
    arrays = {k: getattr(prepared, k) for k in PREPARED_KEYS}
    with all_or_none(npz_path, manifest_path):
        write_npz(npz_path, **arrays)
        digest = hashlib.sha256(Path(npz_path).read_bytes()).hexdigest()
        write_json(
            manifest_path,
            {
                "source": prepared.source,
                "file": Path(npz_path).name,
                "sha256": digest,
                "shapes": {k: list(v.shape) for k, v in arrays.items()},
                "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
                **({"meta": prepared.meta} if prepared.meta else {}),
            },
        )


def load_prepared(npz_path: str | Path) -> Prepared:
    """Load a prepared ``.npz``, checking keys, dtype and layout; raise ``DataError`` naming the fix."""
    npz_path = Path(npz_path)
    fix = f"Delete it and rerun the prepare stage (python -m pipeline prepare --dataset {npz_path.stem})."
    if not npz_path.exists():
        raise DataError(f"Prepared dataset {npz_path} does not exist. Run the prepare stage first "
                        f"(python -m pipeline prepare --dataset {npz_path.stem}).")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in PREPARED_KEYS}
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"Prepared dataset {npz_path} is unreadable or lacks one of {PREPARED_KEYS} "
                        f"({exc}). {fix}") from exc
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"{npz_path}: '{key}' must be uint8 N×H×W×C with C in (1, 3), "
                            f"found {x.dtype} {x.shape}. {fix}")
    source = ""
    manifest = npz_path.with_suffix(".json")
    if manifest.exists():
        source = json.loads(manifest.read_text()).get("source", "")
    return Prepared(source=source, **arrays)


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 N×H×W×C images resized to size×size with PIL bicubic (antialiased); unchanged if already that size."""
    if images.shape[1:3] == (size, size):
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC)) for img in images])
