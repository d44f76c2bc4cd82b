"""CIFAR-10 from the published ``cifar-10-python.tar.gz`` (the paper's main dataset).

The archive holds python pickles ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``: dicts
with ``b"data"`` (N×3072 uint8, rows of 1,024 red, then green, then blue values of a 32×32 image)
and ``b"labels"``. Train = the five training batches in file order (the official code's order;
50,000 images), test = ``test_batch`` (10,000; unused by the official code, here for the real-data
floor and the ``test`` reference set). No augmentation, no dequantisation, as the official code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib

import numpy as np
from tqdm.auto import tqdm

from pipeline.data import DataError, Prepared, resize_all
from pipeline.data.archives import Archive, expected_md5, locate, show_progress

# URL and MD5 as in torchvision.datasets.CIFAR10 (torchvision 0.29.2).
ARCHIVE = Archive("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                  url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
TRAIN_BATCHES = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "cifar-10-batches-py/test_batch"


class _BatchUnpickler(pickle.Unpickler):
    """Only plain containers and numpy arrays: a batch file must not be able to run code."""

    def find_class(self, module: str, name: str):
        if module.startswith("numpy") and name in {"_reconstruct", "ndarray", "dtype", "scalar"}:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles written by Python 3 store bytes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")


def decode_batch(raw: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch → (uint8 N×32×32×3, int64 labels)."""
    batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{member}: expected a dict with b'data' and b'labels', found {type(batch).__name__}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{member}: expected uint8 N×3072 data with N labels, found {data.dtype} {data.shape} "
                        f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def read_archive(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode every needed batch of the tar.gz; any tar/gzip/pickle failure becomes a ``DataError``.

    One pass in the archive's own member order (data_batch_4 comes first in the published file): asking a gzip tar
    for members out of order would decompress it again from the start for each backward seek.
    """
    wanted, out = {*TRAIN_BATCHES, TEST_BATCH}, {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            # Decompressing 163 MB takes a while: show it, unless PIPELINE_PROGRESS=0 (tests, logs).
            bar = tqdm(total=len(wanted), desc="cifar10 batches", disable=not show_progress())
            for info in tar:
                if info.name in wanted and info.isfile():
                    out[info.name] = decode_batch(tar.extractfile(info).read(), info.name)
                    bar.update()
            bar.close()
    except (tarfile.TarError, EOFError, OSError, zlib.error, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DataError(f"{path} could not be decoded ({type(exc).__name__}: {exc}); delete it and download it "
                        f"again from {ARCHIVE.url}") from exc
    missing = sorted(wanted - out.keys())
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: not the CIFAR-10 python archive; delete it and "
                        f"download it again from {ARCHIVE.url}")
    return out


def prepare(cfg: dict) -> Prepared:
    """Verify and decode the archive; resize only when ``cfg['resolution']`` is not the native 32."""
    path = locate(ARCHIVE, cfg["raw_dir"], cfg["download"])
    batches = read_archive(path)
    x_train = np.concatenate([batches[m][0] for m in TRAIN_BATCHES])
    y_train = np.concatenate([batches[m][1] for m in TRAIN_BATCHES])
    x_test, y_test = batches[TEST_BATCH]
    size = int(cfg["resolution"])
    x_train, x_test = resize_all(x_train, size), resize_all(x_test, size)
    return Prepared(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                    source=f"{ARCHIVE.name} (MD5 {expected_md5(ARCHIVE)}, {ARCHIVE.url}): data_batch_1..5 in file "
                           f"order (train), test_batch (test)" + ("" if size == 32 else f", PIL bicubic to {size}"))
