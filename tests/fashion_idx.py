"""Small Fashion-MNIST files in the exact idx format of the published (and Debian) files, for the tests.

An idx file is a big-endian header (magic 0x00000803 + count + 28 + 28 for images, 0x00000801 + count
for labels) followed by the uint8 items; the published files are gzipped. ``write_set`` writes the four
files (gzipped or plain) and returns the test override table that ``PIPELINE_TEST_CHECKSUMS`` takes
({name: {"count", "sha256" of the decompressed bytes}}), so the real prepare code verifies them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np

NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_images(images: np.ndarray, magic: int = 0x803) -> bytes:
    """uint8 N×H×W images as an idx3-ubyte file."""
    n, h, w = images.shape
    return struct.pack(">IIII", magic, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 0x801) -> bytes:
    """uint8 labels as an idx1-ubyte file."""
    return struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def write_file(directory: Path, name: str, content: bytes, gz: bool) -> Path:
    """Write ``content`` as ``name`` (plain) or ``name.gz`` (gzip, fixed mtime so the bytes are reproducible)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"{name}.gz" if gz else name)
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def make_set(n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, bytes]:
    """The decompressed contents of the four files: labels cycling through 0–9, random 28×28 images whose
    brightness grows with the label (so a classifier can learn them)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = NAMES[split]
        y = np.arange(n) % 10
        x = rng.integers(0, 40, (n, 28, 28)) + 24 * y[:, None, None]
        out[images] = idx_images(x.astype(np.uint8))
        out[labels] = idx_labels(y)
    return out


def override(contents: dict[str, bytes]) -> dict[str, dict]:
    """The ``PIPELINE_TEST_CHECKSUMS`` table for these contents: count from the header, SHA-256 of the bytes."""
    return {name: {"count": struct.unpack(">I", raw[4:8])[0], "sha256": hashlib.sha256(raw).hexdigest()}
            for name, raw in contents.items()}


def write_set(directory: Path, contents: dict[str, bytes], gz: bool, table_path: Path) -> dict[str, Path]:
    """Write the four files into ``directory`` and their override table to ``table_path``; return the paths."""
    table_path.write_text(json.dumps(override(contents)))
    return {name: write_file(directory, name, raw, gz) for name, raw in contents.items()}
