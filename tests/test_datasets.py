"""The paper's datasets, prepared by the real code from small archives written in the exact real formats."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import struct
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


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle writes it (SHORT_BINSTRING / BINSTRING)."""
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"M" + struct.pack("<H", v) if 0 <= v < 65536 else \
        b"J" + struct.pack("<i", v)


def _py2_uint8_matrix(a: np.ndarray) -> bytes:
    """A uint8 2-D array as Python 2 numpy pickled it: numpy.core.multiarray._reconstruct + BUILD state."""
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85" + _py2_str(b"b")
            + b"\x87R(" + _py2_int(1) + _py2_int(a.shape[0]) + _py2_int(a.shape[1]) + b"\x86"
            + b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R("
            + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
            + b"\x89" + _py2_str(a.tobytes()) + b"tb")


def py2_batch_pickle(data: np.ndarray, labels: list[int], batch_label: bytes, filenames: list[bytes]) -> bytes:
    """A CIFAR-10 batch byte for byte in the published files' format: a protocol-2 pickle written by Python 2, so
    keys and strings are py2 ``str`` (bytes on Python 3) and the array is an old-numpy reconstruct call. A pickle
    written by Python 3 would store bytes differently (``_codecs.encode``) and not exercise the real path."""
    def items(values: list[bytes]) -> bytes:
        return b"](" + b"".join(values) + b"e"

    return (b"\x80\x02}(" + _py2_str(b"data") + _py2_uint8_matrix(data)
            + _py2_str(b"labels") + items([_py2_int(v) for v in labels])
            + _py2_str(b"batch_label") + _py2_str(batch_label)
            + _py2_str(b"filenames") + items([_py2_str(f) for f in filenames]) + b"u.")


def _add(tar: tarfile.TarFile, name: str, blob: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


# Member order of the published archive (tar tzf): training batches are not in numeric order there.
CIFAR_MEMBERS = ["data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta", "data_batch_2",
                 "data_batch_5", "data_batch_1"]


def write_cifar(raw: Path, n: int = 6, members: list[str] = CIFAR_MEMBERS) -> dict[str, tuple[np.ndarray, list[int]]]:
    """cifar-10-python.tar.gz: directory cifar-10-batches-py/ with Python 2 pickles, data N×3072 channel-major."""
    raw.mkdir(parents=True, exist_ok=True)
    batches = {}
    with tarfile.open(raw / "cifar-10-python.tar.gz", "w:gz") as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in members:
            if name == "readme.html":
                blob = b"<html>CIFAR-10</html>"
            elif name == "batches.meta":
                blob = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n}, protocol=2)
            else:
                data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
                labels = RNG.integers(0, 10, n).tolist()
                batches[name] = (data, labels)
                files = [f"{name}_{i}.png".encode() for i in range(n)]
                blob = py2_batch_pickle(data, labels, name.encode(), files)
            _add(tar, f"cifar-10-batches-py/{name}", blob)
    return batches


def test_py2_pickle_fixture_is_what_python2_numpy_wrote():
    """The fixture writer itself: plain pickle (as torchvision reads it) must see the same dict and array."""
    data = RNG.integers(0, 256, (3, 3072), dtype=np.uint8)
    batch = pickle.loads(py2_batch_pickle(data, [1, 300, 70000], b"b", [b"x.png"] * 3), encoding="latin1")
    assert np.array_equal(batch["data"], data) and batch["labels"] == [1, 300, 70000]


def test_cifar10_decodes_channel_major_rows_in_file_order(tmp_path, checksums, caplog):
    raw = tmp_path / "raw"
    batches = write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        p = cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    assert "for tests only" in caplog.text  # the checksum override never goes unnoticed
    assert p.x_train.shape == (30, 32, 32, 3) and p.x_test.shape == (6, 32, 32, 3) and p.x_train.dtype == np.uint8
    data, labels = batches["data_batch_2"]
    img = p.x_train[6 + 4]  # batch 2, image 4: file order
    assert np.array_equal(img[..., 0].ravel(), data[4, :1024])  # red plane first
    assert np.array_equal(img[..., 2].ravel(), data[4, 2048:])
    assert p.y_train[6 + 4] == labels[4] and p.y_train.dtype == np.int64
    assert np.array_equal(p.y_test, batches["test_batch"][1])
    assert np.array_equal(p.y_train[:6], batches["data_batch_1"][1])  # by name, not by the tar's member order
    assert "c58f30108f718f92721af3b95e74349a" not in p.source  # the override, not the published MD5, was used


def test_cifar10_other_resolution_is_pil_bicubic(tmp_path, checksums):
    raw = tmp_path / "raw"
    batches = write_cifar(raw, n=2)
    checksums(raw / "cifar-10-python.tar.gz")
    p = cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 16})
    assert p.x_train.shape == (10, 16, 16, 3) and p.x_test.shape == (2, 16, 16, 3) and p.x_train.dtype == np.uint8
    first = batches["data_batch_1"][0][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(p.x_train[0], np.asarray(Image.fromarray(first).resize((16, 16), Image.BICUBIC)))
    assert "bicubic to 16" in p.source


def test_cifar10_checksum_mismatch_names_file_and_both_md5s(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_cifar(raw)
    monkeypatch.delenv(TEST_CHECKSUMS_ENV, raising=False)
    with pytest.raises(DataError) as err:
        cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "c58f30108f718f92721af3b95e74349a" in msg
    assert _md5(raw / "cifar-10-python.tar.gz") in msg and "Delete it" in msg


def test_cifar10_archive_without_a_batch_names_it(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_cifar(raw, members=[m for m in CIFAR_MEMBERS if m != "data_batch_3"])
    checksums(raw / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_3"):
        cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})


def test_truncated_cifar10_archive_is_a_clear_error(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_cifar(raw)
    path = raw / "cifar-10-python.tar.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    checksums(path)  # the checksum matches: decoding itself must notice
    with pytest.raises(DataError, match="could not be decoded") as err:  # not a raw tarfile/EOF/zlib error
        cifar10.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    assert "cifar-10-python.tar.gz" in str(err.value) and "download it again" in str(err.value)


# The first file each dataset looks for, its published MD5 and where it comes from.
PUBLISHED = [
    pytest.param(cifar10, "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", id="cifar10"),
    pytest.param(svhn, "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                 "http://ufldl.stanford.edu/housenumbers/train_32x32.mat", id="svhn"),
    pytest.param(celeba, "img_align_celeba.zip", "00d2c5bc6d35e252742224ab0c1e8fcb",
                 "https://drive.google.com/uc?id=0B7EVK8r0v71pZjFTYXZWM3FlRnM", id="celeba"),
]


def _assert_says_what_to_fetch(msg: str, name: str, raw: Path, md5: str, url: str) -> None:
    for part in (name, str(raw.resolve()), md5, url):
        assert part in msg, (part, msg)
    assert "\n" not in msg  # one paragraph


@pytest.mark.parametrize(("module", "name", "md5", "url"), PUBLISHED)
def test_missing_archive_without_download_says_what_to_fetch(tmp_path, module, name, md5, url):
    raw = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        module.prepare({"raw_dir": str(raw), "download": False, "resolution": 32})
    _assert_says_what_to_fetch(str(err.value), name, raw, md5, url)
    assert "download: false" in str(err.value)


@pytest.mark.parametrize(("module", "name", "md5", "url"), PUBLISHED)
def test_missing_archive_with_download_offline_fails_fast(tmp_path, module, name, md5, url):
    """A real download attempt (no network here; CelebA also needs gdown): the same message, quickly, and no
    partial file left behind."""
    raw = tmp_path / "raw"
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        module.prepare({"raw_dir": str(raw), "download": True, "resolution": 32})
    assert time.monotonic() - t0 < 40  # the 30 s socket timeout bounds a silent host; refused ones fail at once
    _assert_says_what_to_fetch(str(err.value), name, raw, md5, url)
    assert "download failed" in str(err.value)
    assert not any(raw.iterdir())


def write_svhn(raw: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    raw.mkdir(parents=True, exist_ok=True)
    x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n).reshape(n, 1) % 10 + 1).astype(np.uint8)  # 1..10, 10 = digit 0; uint8 as published
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
    assert p.x_train.dtype == np.uint8 and p.y_train.dtype == np.int64
    assert p.y_train[9] == 0 and p.y_train[0] == 1 and set(p.y_train) == set(range(10))
    assert np.array_equal(p.y_test, [1, 2, 3, 4, 5])


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


def test_celeba_crop_larger_than_the_image_names_the_setting(tmp_path, checksums):
    raw = tmp_path / "raw"
    write_celeba(raw, [0, 2])
    checksums(raw / "img_align_celeba.zip", raw / "list_eval_partition.txt")
    with pytest.raises(DataError, match="center_crop 200"):
        celeba.prepare({"raw_dir": str(raw), "download": False, "resolution": 32, "center_crop": 200})


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
