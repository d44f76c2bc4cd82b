"""Fashion-MNIST from its four idx files (the official code's second configuration, ``--category mnist-fashion``).

70,000 28×28 grey images of clothing in 10 classes (Zalando Research, MIT licence): 60,000 training
images in ``train-*``, 10,000 test images in ``t10k-*``. The files are looked for in
``prepare.raw_dir`` (``data/raw/fashion-mnist/``), then in ``prepare.system_dir``, where the Debian
package ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist/``), each either
gzipped (``<name>.gz``, as published and as Debian ships them) or plain.

Verification is on the decompressed contents, not on the ``.gz`` files: Debian recompressed them
(gzip header dated 2020-06-05, 24 bytes smaller), so the publisher's ``.gz`` MD5s do not match the
Debian files although the decompressed bytes are the same. Each file is checked for its idx magic
number, its count, its image dimensions, its exact length, and the SHA-256 of its decompressed bytes
(what ``zcat <file>.gz | sha256sum`` prints), and labels for the range 0–9.

The official loader (``model/utils/mnist_util.py``) scales x·(2/255) − 1, shuffles the 60,000 training
images once with ``np.random.shuffle`` on NumPy's global, unseeded RNG, and then takes batches in
that order every epoch without reshuffling; it never reads the test images. Here the shuffle is the
same algorithm on ``np.random.RandomState(shuffle_seed)`` (stable across NumPy versions), so the order
is fixed and recorded; ``x_train`` is stored already in that order and the trainer reads it in order.
The test images stay in file order: the held-out reference. The scaling to [−1, 1] happens at training
time (``pipeline.pixels.to_float``); the prepared file holds the uint8 pixels.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import DataError, Prepared
from pipeline.data.archives import TEST_CHECKSUMS_ENV

log = logging.getLogger("pipeline")

DEBIAN_PACKAGE = "dataset-fashion-mnist"
UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
UPSTREAM_REPO = "https://github.com/zalandoresearch/fashion-mnist"
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # idx: 0x00000803 (ubyte, 3 dims), 0x00000801 (ubyte, 1 dim)
SIDE = 28
N_CLASSES = 10


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name, magic number, number of items, and SHA-256 of its decompressed bytes."""

    name: str
    magic: int
    count: int
    sha256: str

    @property
    def header_len(self) -> int:
        return 16 if self.magic == IMAGE_MAGIC else 8

    @property
    def item_len(self) -> int:
        return SIDE * SIDE if self.magic == IMAGE_MAGIC else 1


# SHA-256 of the decompressed files, computed here from the Debian package (0.0~git20200523.55506a9-1).
# Their MD5s (f4a8712d…, 9018921c…, 8181f547…, 15d48437…) are the ones public loaders record for the
# decompressed upstream files, whose .gz match the publisher's MD5s: same bytes (docs/fashion-mnist.md).
FILES = (
    IdxFile("train-images-idx3-ubyte", IMAGE_MAGIC, 60000,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    IdxFile("train-labels-idx1-ubyte", LABEL_MAGIC, 60000,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    IdxFile("t10k-images-idx3-ubyte", IMAGE_MAGIC, 10000,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    IdxFile("t10k-labels-idx1-ubyte", LABEL_MAGIC, 10000,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
)


def expected(spec: IdxFile) -> IdxFile:
    """The published facts of ``spec``, or the test override from ``PIPELINE_TEST_CHECKSUMS``.

    The override (tests only, as for the archives) maps a file name to ``{"count": N, "sha256": "…"}``,
    so that small files in the exact idx format go through the whole prepare.
    """
    path = os.environ.get(TEST_CHECKSUMS_ENV)
    if not path:
        return spec
    try:
        entry = json.loads(Path(path).read_text()).get(spec.name)
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"{TEST_CHECKSUMS_ENV}={path} is not a readable JSON object ({exc}); unset it (tests only).") from exc
    if entry is None:
        return spec
    log.warning("count and SHA-256 of %s taken from %s (%s): for tests only", spec.name, TEST_CHECKSUMS_ENV, path)
    return IdxFile(spec.name, spec.magic, int(entry["count"]), str(entry["sha256"]))


def _help(dirs: list[Path]) -> str:
    names = ", ".join(f.name + ".gz" for f in FILES)
    return (f"Fashion-MNIST needs the four idx files {names} (gzipped or not) in {dirs[0]}/ or {dirs[1]}/. "
            f"On Debian or Ubuntu install them with `apt-get install {DEBIAN_PACKAGE}` (into {dirs[1]}/); "
            f"elsewhere download them from {UPSTREAM_URL} (or {UPSTREAM_REPO}, data/fashion/) into {dirs[0]}/; "
            f"then rerun the prepare stage (python -m pipeline prepare --dataset fashion-mnist).")


def _candidates(directory: Path, spec: IdxFile) -> list[Path]:
    return [p for p in (directory / spec.name, directory / f"{spec.name}.gz") if p.is_file()]


def locate(raw_dir: str | os.PathLike, system_dir: str | os.PathLike) -> dict[str, Path]:
    """The path of each of the four files: from ``raw_dir`` if it holds any of them, else from ``system_dir``.

    One directory supplies all four, so a half-filled ``raw_dir`` is reported rather than silently
    mixed with the system copy. Plain files are preferred to their ``.gz`` (no decompression).
    """
    dirs = [Path(raw_dir), Path(system_dir)]  # as configured: the manifest records them, machine-independent
    for directory in dirs:
        found = {f.name: _candidates(directory, f) for f in FILES}
        if any(found.values()):
            missing = [f.name for f in FILES if not found[f.name]]
            if missing:
                raise DataError(f"{directory}/ holds only some of the Fashion-MNIST files: {', '.join(missing)} "
                                f"(.gz or plain) missing. " + _help(dirs))
            return {name: paths[0] for name, paths in found.items()}
    raise DataError("The Fashion-MNIST files are missing: none of them is in either directory. " + _help(dirs))


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Decompress (when ``.gz``) and verify one idx file; return its uint8 payload (images N×28×28, labels N).

    At most the expected number of bytes plus one is decompressed, so a wrong file cannot fill the memory.
    """
    spec = expected(spec)
    fix = f"Delete it and reinstall it (apt-get install --reinstall {DEBIAN_PACKAGE}) or download it again from {UPSTREAM_URL}"
    size = spec.header_len + spec.count * spec.item_len
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read(size + 1)
        else:
            with open(path, "rb") as fh:
                raw = fh.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a cut-off stream an EOFError
        raise DataError(f"{path} could not be decompressed ({type(exc).__name__}: {exc}): corrupt or truncated. "
                        f"{fix}.") from exc
    if len(raw) < spec.header_len:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than the idx header. {fix}.")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != spec.magic:
        raise DataError(f"{path} is not an idx {'image' if spec.magic == IMAGE_MAGIC else 'label'} file: magic number "
                        f"{magic:#010x}, expected {spec.magic:#010x}. {fix}.")
    if count != spec.count:
        raise DataError(f"{path} holds {count} items, expected {spec.count}: not the Fashion-MNIST {spec.name}. {fix}.")
    if spec.magic == IMAGE_MAGIC:
        dims = struct.unpack(">II", raw[8:16])
        if dims != (SIDE, SIDE):
            raise DataError(f"{path}: images of {dims[0]}x{dims[1]}, expected {SIDE}x{SIDE}. {fix}.")
    if len(raw) != size:
        state = "truncated" if len(raw) < size else "longer than its header says"
        raise DataError(f"{path} is {state}: {'at least ' if len(raw) > size else ''}{len(raw)} decompressed bytes, "
                        f"expected {size}. {fix}.")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise DataError(f"{path} does not hold the published Fashion-MNIST data: SHA-256 of its decompressed bytes "
                        f"{digest}, expected {spec.sha256}. {fix}.")
    payload = np.frombuffer(raw, dtype=np.uint8, offset=spec.header_len)
    if spec.magic == LABEL_MAGIC:
        if payload.size and payload.max() >= N_CLASSES:
            raise DataError(f"{path}: label {payload.max()} outside 0-{N_CLASSES - 1}. {fix}.")
        return payload.copy()
    return payload.reshape(spec.count, SIDE, SIDE).copy()


def train_order(n: int, seed: int) -> np.ndarray:
    """The fixed order of the training images: ``np.random.RandomState(seed).permutation(n)``.

    The same Fisher–Yates shuffle as the official ``np.random.shuffle(indices)`` (which draws from the
    unseeded global RandomState), made reproducible by the seed; RandomState's stream is frozen across
    NumPy versions, unlike ``np.random.Generator``'s.
    """
    return np.random.RandomState(seed).permutation(n)


def prepare(cfg: dict) -> Prepared:
    """Locate, verify and decode the four files; store the training images in the fixed shuffled order."""
    paths = locate(cfg["raw_dir"], cfg["system_dir"])
    arrays = {f.name: read_idx(paths[f.name], f) for f in FILES}
    x_train, y_train = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    x_test, y_test = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for what, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        if len(x) != len(y):  # only reachable through the test override, which sets each count apart
            raise DataError(f"{what}: {len(x)} images but {len(y)} labels ({paths[what + '-images-idx3-ubyte']})")
    seed = int(cfg["shuffle_seed"])
    order = train_order(len(x_train), seed)
    meta = {
        "files": {f.name: {"path": str(paths[f.name]), "sha256_decompressed": expected(f).sha256} for f in FILES},
        "train_order": {
            "how": f"numpy.random.RandomState({seed}).permutation({len(x_train)}): x_train[i] is training image "
                   f"order[i] of train-images-idx3-ubyte (the official code shuffles once at load, unseeded)",
            "shuffle_seed": seed,
            "sha256_int64": hashlib.sha256(order.astype("<i8").tobytes()).hexdigest(),
            "first": order[:10].tolist(),
        },
        "test_order": "file order of t10k-images-idx3-ubyte (the held-out reference)",
        "scaling": "uint8 pixels; x * (2/255) - 1 at training time (official mnist_util.py)",
    }
    source_dir = paths["train-images-idx3-ubyte"].parent
    return Prepared(
        x_train=x_train[order][..., None], y_train=y_train[order].astype(np.int64),
        x_test=x_test[..., None], y_test=y_test.astype(np.int64),
        source=f"Fashion-MNIST idx files from {source_dir} (SHA-256 of the decompressed files verified; "
               f"{UPSTREAM_REPO}); training images in the fixed order of shuffle_seed {seed}",
        meta=meta,
    )
