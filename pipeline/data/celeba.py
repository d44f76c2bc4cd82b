"""CelebA aligned faces from the published ``img_align_celeba.zip`` and ``list_eval_partition.txt``.

202,599 JPEGs of 178×218 under ``img_align_celeba/``; the partition file's lines ``000001.jpg 0``
assign each to train (0, 162,770 images), valid (1) or test (2, 19,962). Train = partition 0,
test = partition 2; valid is not used. Each face is centre-cropped to ``center_crop``×``center_crop``
(default 140) and resized to ``resolution`` with PIL bicubic (antialiased). CelebA is not in the
official code and the paper's CelebA resolution and crop could not be read: 32×32 is our default,
as the same group's CoopFlow uses. No labels are used (zeros).
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
from tqdm.auto import tqdm

from pipeline.data import DataError, Prepared
from pipeline.data.archives import Archive, expected_md5, locate, show_progress

# Google Drive ids and MD5s as in torchvision.datasets.CelebA (torchvision 0.29.2).
IMAGES = Archive("img_align_celeba.zip", "00d2c5bc6d35e252742224ab0c1e8fcb", drive_id="0B7EVK8r0v71pZjFTYXZWM3FlRnM")
PARTITION = Archive("list_eval_partition.txt", "d32c9cbf5e040fd4025c592c306e6668",
                    drive_id="0B7EVK8r0v71pY0NSMzRuSXJEVkk")
FOLDER = "img_align_celeba/"


def read_partition(path) -> dict[int, list[str]]:
    """{0: train files, 1: valid files, 2: test files} in the file's order."""
    splits: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {n}: expected '<file>.jpg <0|1|2>', found {line!r}")
        splits[int(parts[1])].append(parts[0])
    return splits


def crop_resize(jpeg: bytes, crop: int, size: int) -> np.ndarray:
    """Decode one JPEG, centre-crop crop×crop, resize to size×size (PIL bicubic) → uint8 size×size×3."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        img = img.convert("RGB")
        w, h = img.size
        if crop > min(w, h):  # a setting error, not a damaged archive: say which setting
            raise DataError(f"center_crop {crop} is larger than the {w}x{h} CelebA image; set prepare.center_crop "
                            f"to at most {min(w, h)} in params.yaml")
        left, top = (w - crop) // 2, (h - crop) // 2
        return np.asarray(img.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BICUBIC))


def _decode(zf: zipfile.ZipFile, names: list[str], crop: int, size: int, desc: str) -> np.ndarray:
    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    for i, name in enumerate(tqdm(names, desc=desc, disable=not show_progress(), mininterval=2)):
        try:
            out[i] = crop_resize(zf.read(FOLDER + name), crop, size)
        except KeyError as exc:
            raise DataError(f"{zf.filename} lacks {FOLDER + name}, listed in {PARTITION.name}") from exc
    return out


def prepare(cfg: dict) -> Prepared:
    """Verify both files, decode the train and test partitions straight from the zip."""
    images = locate(IMAGES, cfg["raw_dir"], cfg["download"])
    splits = read_partition(locate(PARTITION, cfg["raw_dir"], cfg["download"]))
    crop, size = int(cfg.get("center_crop", 140)), int(cfg["resolution"])
    try:
        with zipfile.ZipFile(images) as zf:
            x_train = _decode(zf, splits[0], crop, size, "celeba train")
            x_test = _decode(zf, splits[2], crop, size, "celeba test")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{images} could not be decoded ({type(exc).__name__}: {exc}); delete it and download it "
                        f"again from {IMAGES.source}") from exc
    return Prepared(
        x_train=x_train, y_train=np.zeros(len(x_train), np.int64), x_test=x_test,
        y_test=np.zeros(len(x_test), np.int64),
        source=f"{IMAGES.name} (MD5 {expected_md5(IMAGES)}), {PARTITION.name} (MD5 {expected_md5(PARTITION)}): "
               f"partition 0 (train), 2 (test); centre crop {crop}, PIL bicubic to {size}x{size}")
