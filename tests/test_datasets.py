"""The paper's datasets, prepared by the real code from small archives written in the exact real formats."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml
from PIL import Image

from pipeline.__main__ import main
from pipeline.data import DataError, load_prepared
from pipeline.data import celeba, cifar10, svhn
from pipeline.data.archives import TEST_CHECKSUMS_ENV

RNG = np.random.default_rng(0)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(raw: Path, n: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    """cifar-10-python.tar.gz: python pickles with bytes keys, data N×3072 channel-major."""
    raw.mkdir(parents=True, exist_ok=True)
    batches = {}
    with tarfile.open(raw / "cifar-10-python.tar.gz", "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = RNG.integers(0, 10, n).tolist()
            batches[name] = (data, labels)
            blob = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        meta = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return batches


def test_cifar10_decodes_channel_major_rows_in_file_order(tmp_path, checksums):
    raw = tmp_path / "raw"
    batches = write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    p = cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    assert p.x_train.shape == (30, 32, 32, 3) and p.x_test.shape == (6, 32, 32, 3) and p.x_train.dtype == np.uint8
    data, labels = batches["data_batch_2"]
    img = p.x_train[6 + 4]  # batch 2, image 4: file order
    assert np.array_equal(img[..., 0].ravel(), data[4, :1024])  # red plane first
    assert np.array_equal(img[..., 2].ravel(), data[4, 2048:])
    assert p.y_train[6 + 4] == labels[4] and p.y_train.dtype == np.int64
    assert np.array_equal(p.y_test, batches["test_batch"][1])
    assert "c58f30108f718f92721af3b95e74349a" not in p.source  # the override, not the published MD5, was used


def test_cifar10_checksum_mismatch_names_file_and_both_md5s(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_cifar(raw)
    monkeypatch.delenv(TEST_CHECKSUMS_ENV, raising=False)
    with pytest.raises(DataError) as err:
        cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "c58f30108f718f92721af3b95e74349a" in msg
    assert _md5(raw / "cifar-10-python.tar.gz") in msg and "Delete it" in msg


def test_truncated_cifar10_archive_is_a_clear_error(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_cifar(raw)
    path = raw / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    checksums(path)  # the checksum matches: decoding itself must notice
    with pytest.raises(DataError, match="could not be decoded"):
        cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})


def test_missing_archive_without_download_says_what_to_fetch(tmp_path):
    with pytest.raises(DataError) as err:
        cifar10.prepare({"raw_dir": str(tmp_path / "nowhere"), "download": False, "resolution": 32})
    msg = str(err.value)
    for part in ("cifar-10-python.tar.gz", str(tmp_path / "nowhere"), "c58f30108f718f92721af3b95e74349a",
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "download: false"):
        assert part in msg, part


def test_missing_archive_with_download_offline_fails_fast(tmp_path):
    """A real download attempt (no network here): the same message, quickly, and no partial file."""
    raw = tmp_path / "raw"
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        svhn.prepare({"raw_dir": str(raw), "download": True, "resolution": 32})
    assert time.monotonic() - t0 < 60
    msg = str(err.value)
    assert "train_32x32.mat" in msg and "e26dedcc434d2e4c54c9b2d4a06d8373" in msg and "download failed" in msg
    assert not any(raw.iterdir())


def write_svhn(raw: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    raw.mkdir(parents=True, exist_ok=True)
    x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = np.arange(n).reshape(n, 1) % 10 + 1  # 1..10, 10 = digit 0
    return x, y


def test_svhn_axis_order_and_label_10_is_zero(tmp_path, checksums):
    raw = tmp_path / "raw"
    x, y = write_svhn(raw, 12)
    scipy.io.savemat(raw / "train_32x32.mat", {"X": x, "y": y})
    scipy.io.savemat(raw / "test_32x32.mat", {"X": x[..., :5], "y": y[:5]})
    checksums(raw / "train_32x32.mat", raw / "test_32x32.mat")
    p = svhn.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    assert p.x_train.shape == (12, 32, 32, 3) and p.x_test.shape == (5, 32, 32, 3)
    assert np.array_equal(p.x_train[7], x[:, :, :, 7])
    assert p.y_train[9] == 0 and p.y_train[0] == 1 and set(p.y_train) == set(range(10))


def write_celeba(raw: Path, parts: list[int]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(raw / "img_align_celeba.zip", "w") as zf:
        for i in range(len(parts)):
            buf = io.BytesIO()
            Image.fromarray(RNG.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(buf, format="JPEG")
            zf.writestr(f"img_align_celeba/{i + 1:06d}.jpg", buf.getvalue())
    (raw / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {s}\n" for i, s in enumerate(parts)))


def test_celeba_partitions_crop_and_resize(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_celeba(raw, [0, 0, 0, 1, 2, 0, 2])
    checksums(raw / "img_align_celeba.zip", raw / "list_eval_partition.txt")
    p = celeba.prepare({"raw_dir": str(raw), "download": False, "resolution": 32, "center_crop": 140})
    assert p.x_train.shape == (4, 32, 32, 3) and p.x_test.shape == (2, 32, 32, 3) and p.x_train.dtype == np.uint8
    # The same crop and resize by hand on the first face.
    with zipfile.ZipFile(raw / "img_align_celeba.zip") as zf, Image.open(io.BytesIO(zf.read(
            "img_align_celeba/000001.jpg"))) as img:
        ref = np.asarray(img.convert("RGB").crop((19, 39, 159, 179)).resize((32, 32), Image.BICUBIC))
    assert np.array_equal(p.x_train[0], ref)


def test_celeba_listed_file_missing_from_zip(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_celeba(raw, [0, 2])
    with open(raw / "list_eval_partition.txt", "a") as fh:
        fh.write("999999.jpg 0\n")
    checksums(raw / "img_align_celeba.zip", raw / "list_eval_partition.txt")
    with pytest.raises(DataError, match="999999.jpg"):
        celeba.prepare({"raw_dir": str(raw), "download": False, "resolution": 32, "center_crop": 140})


def _params_with_raw(tmp_path: Path, raw: Path) -> Path:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["datasets"]["cifar10"]["prepare"].update(raw_dir=str(raw), download=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_prepare_stage_writes_npz_and_manifest_or_nothing(tmp_path, checksums, in_repo, monkeypatch, capsys):
    raw = tmp_path / "raw"
    write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    params = _params_with_raw(tmp_path, raw)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["prepare", "--dataset", "cifar10", "--params", str(params), "--no-progress"]) == 0
    data = load_prepared(work / "data/prepared/cifar10.npz")
    assert data.x_train.shape == (30, 32, 32, 3)
    manifest = json.loads((work / "data/prepared/cifar10.json").read_text())
    assert manifest["shapes"]["x_test"] == [6, 32, 32, 3] and "cifar-10-python.tar.gz" in manifest["source"]

    # A corrupt archive: exit 1, the message names the file, and no prepared file is left.
    for f in (work / "data/prepared").iterdir():
        f.unlink()
    archive = raw / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:100])
    assert main(["prepare", "--dataset", "cifar10", "--params", str(params), "--no-progress"]) == 1
    assert "cifar-10-python.tar.gz" in capsys.readouterr().err
    assert not any((work / "data/prepared").iterdir())
