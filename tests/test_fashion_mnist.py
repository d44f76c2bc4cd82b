"""Fashion-MNIST's prepare, by the real code, on small files in the exact idx format and on the Debian files."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fashion_idx import make_set, write_file, write_set

from pipeline.__main__ import main
from pipeline.data import DataError, fashion_mnist, load_prepared
from pipeline.data.archives import TEST_CHECKSUMS_ENV

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES = "train-images-idx3-ubyte"


def _params(tmp_path: Path, raw: Path, system: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["fashion-mnist"]["prepare"].update(raw_dir=str(raw), system_dir=str(system))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working directory (data/prepared/ is written here) and the override table's path."""
    wd = tmp_path / "work"
    wd.mkdir()
    monkeypatch.chdir(wd)
    table = tmp_path / "checksums.json"
    monkeypatch.setenv(TEST_CHECKSUMS_ENV, str(table))
    return wd, table


def _prepare(params: Path) -> int:
    return main(["prepare", "--dataset", "fashion-mnist", "--params", str(params), "--no-progress"])


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_prepare_decodes_verifies_and_orders(tmp_path, work, gz):
    wd, table = work
    contents = make_set(n_train=60, n_test=20)
    write_set(tmp_path / "raw", contents, gz, table)
    assert _prepare(_params(tmp_path, tmp_path / "raw", tmp_path / "no-system")) == 0
    data = load_prepared(wd / "data/prepared/fashion-mnist.npz")
    assert data.x_train.shape == (60, 28, 28, 1) and data.x_test.shape == (20, 28, 28, 1)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    # the training images in the fixed order RandomState(shuffle_seed=0).permutation, the test images as in the file
    raw_train = np.frombuffer(contents[TRAIN_IMAGES], np.uint8, offset=16).reshape(60, 28, 28)
    order = np.random.RandomState(0).permutation(60)
    assert not np.array_equal(order, np.arange(60))
    np.testing.assert_array_equal(data.x_train[..., 0], raw_train[order])
    np.testing.assert_array_equal(data.y_train, (np.arange(60) % 10)[order])
    raw_test = np.frombuffer(contents["t10k-images-idx3-ubyte"], np.uint8, offset=16).reshape(20, 28, 28)
    np.testing.assert_array_equal(data.x_test[..., 0], raw_test)
    manifest = json.loads((wd / "data/prepared/fashion-mnist.json").read_text())
    assert manifest["meta"]["train_order"]["shuffle_seed"] == 0
    assert manifest["meta"]["train_order"]["first"] == order[:10].tolist()
    assert manifest["meta"]["files"][TRAIN_IMAGES]["sha256_decompressed"] == hashlib.sha256(contents[TRAIN_IMAGES]).hexdigest()


def test_gz_and_plain_give_the_same_file_and_the_seed_changes_the_order(tmp_path, work):
    wd, table = work
    contents = make_set()
    out = {}
    for gz in (True, False):
        write_set(tmp_path / f"raw-{gz}", contents, gz, table)
        assert _prepare(_params(tmp_path, tmp_path / f"raw-{gz}", tmp_path / "no-system")) == 0
        out[gz] = (wd / "data/prepared/fashion-mnist.npz").read_bytes()
    assert out[True] == out[False]
    cfg = {"raw_dir": str(tmp_path / "raw-True"), "system_dir": str(tmp_path / "no-system")}
    a, b = (fashion_mnist.prepare({**cfg, "shuffle_seed": s}) for s in (0, 1))
    assert not np.array_equal(a.x_train, b.x_train)
    assert sorted(map(bytes, a.x_train)) == sorted(map(bytes, b.x_train))  # the same images, another order


def test_the_order_is_the_official_shuffle_with_a_seed():
    """mnist_util.py: np.random.shuffle(np.arange(n, dtype=np.int32)) on the global RandomState (unseeded there)."""
    for seed in (0, 7):
        np.random.seed(seed)
        indices = np.arange(1000, dtype=np.int32)
        np.random.shuffle(indices)
        np.testing.assert_array_equal(indices, fashion_mnist.train_order(1000, seed))


def _corrupt(contents: dict[str, bytes], how: str) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(what the override table records, what is written) for one kind of damage to the training images."""
    good = dict(contents)
    raw = contents[TRAIN_IMAGES]
    bad = dict(contents)
    if how == "magic":
        bad[TRAIN_IMAGES] = struct.pack(">I", 0x801) + raw[4:]
        good = bad  # recorded as written: the magic check itself must catch it
    elif how == "count":
        bad[TRAIN_IMAGES] = raw[:4] + struct.pack(">I", 59) + raw[8:16 + 59 * 784]
    elif how == "dims":
        bad[TRAIN_IMAGES] = raw[:8] + struct.pack(">II", 32, 32) + raw[16:]
        good = bad
    elif how == "truncated":
        bad[TRAIN_IMAGES] = raw[:-100]
    elif how == "longer":
        bad[TRAIN_IMAGES] = raw + b"\x00"
    elif how == "checksum":  # one pixel changed, the header intact
        bad[TRAIN_IMAGES] = raw[:500] + bytes([raw[500] ^ 1]) + raw[501:]
    elif how == "label":  # a label of 10, recorded as written: only the range check can catch it
        labels = contents["train-labels-idx1-ubyte"]
        bad["train-labels-idx1-ubyte"] = labels[:8] + b"\x0a" + labels[9:]
        good = bad
    return good, bad


@pytest.mark.parametrize("how, words", [
    ("magic", "magic number"), ("count", "holds 59 items, expected 60"), ("dims", "32x32"), ("truncated", "truncated"),
    ("longer", "longer than its header"), ("checksum", "SHA-256"), ("label", "label 10"),
])
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_bad_file_fails_with_a_clear_error_and_writes_nothing(tmp_path, work, capsys, how, words, gz):
    wd, table = work
    good, bad = _corrupt(make_set(), how)
    write_set(tmp_path / "raw", good, gz, table)  # the override records the good contents (or the bad, see _corrupt)
    broken = "train-labels-idx1-ubyte" if how == "label" else TRAIN_IMAGES
    write_file(tmp_path / "raw", broken, bad[broken], gz)
    (wd / "data/prepared").mkdir(parents=True)
    assert _prepare(_params(tmp_path, tmp_path / "raw", tmp_path / "no-system")) == 1
    err = capsys.readouterr().err
    assert broken in err and words in err, err
    assert not any((wd / "data/prepared").iterdir())


def test_a_cut_gzip_stream_is_reported_as_corrupt(tmp_path, work, capsys):
    wd, table = work
    contents = make_set()
    paths = write_set(tmp_path / "raw", contents, True, table)
    gz = paths[TRAIN_IMAGES]
    gz.write_bytes(gz.read_bytes()[:len(gz.read_bytes()) // 2])
    assert _prepare(_params(tmp_path, tmp_path / "raw", tmp_path / "no-system")) == 1
    err = capsys.readouterr().err
    assert f"{TRAIN_IMAGES}.gz could not be decompressed" in err and "corrupt or truncated" in err, err
    assert not (wd / "data/prepared/fashion-mnist.npz").exists()


def test_a_half_filled_raw_dir_names_the_missing_files(tmp_path, work, capsys):
    wd, table = work
    contents = make_set()
    write_set(tmp_path / "raw", {k: v for k, v in contents.items() if k.startswith("train")}, True, table)
    assert _prepare(_params(tmp_path, tmp_path / "raw", DEBIAN)) == 1  # not mixed with the Debian copy
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in err and "missing" in err, err


def test_missing_files_fail_within_seconds_naming_package_files_and_url(tmp_path):
    """A fresh process (imports included), neither directory holding the files: one paragraph, exit 1, nothing written."""
    params = _params(tmp_path, tmp_path / "raw", tmp_path / "no-system")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.pop(TEST_CHECKSUMS_ENV, None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--dataset", "fashion-mnist", "--params",
                           str(params)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 1
    err = proc.stderr
    for word in ("apt-get install dataset-fashion-mnist", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", fashion_mnist.UPSTREAM_URL,
                 str(tmp_path / "raw"), str(tmp_path / "no-system")):
        assert word in err, (word, err)
    assert "Traceback" not in err
    assert not (tmp_path / "data/prepared").exists() or not any((tmp_path / "data/prepared").iterdir())
    # Seconds, not minutes: no download attempt, no decoding. The process's time is mostly the CLI's torch import
    # (7 s of 11.5 s measured on 2 cores shared with other jobs), so its bound is loose; the check itself is timed below.
    assert elapsed < 60, elapsed
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.prepare({"raw_dir": str(tmp_path / "raw"), "system_dir": str(tmp_path / "no-system"),
                               "shuffle_seed": 0})
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.skipif(not all((DEBIAN / f"{f.name}.gz").is_file() for f in fashion_mnist.FILES),
                    reason=f"the Debian package dataset-fashion-mnist is not installed ({DEBIAN} lacks the idx files): "
                           "apt-get install dataset-fashion-mnist")
def test_prepare_on_the_real_debian_files(tmp_path, monkeypatch):
    """The shipped files: their gzip is not the publisher's (MD5 differs) but the decompressed bytes verify."""
    monkeypatch.delenv(TEST_CHECKSUMS_ENV, raising=False)
    published_gz_md5 = "8d4fb7e6c68d591d4c3dfef9ec88bf0d"  # train-images-idx3-ubyte.gz, the publisher's README
    gz = DEBIAN / f"{TRAIN_IMAGES}.gz"
    assert hashlib.md5(gz.read_bytes()).hexdigest() != published_gz_md5
    with gzip.open(gz) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == fashion_mnist.FILES[0].sha256
    monkeypatch.chdir(tmp_path)
    assert _prepare(_params(tmp_path, tmp_path / "raw", DEBIAN)) == 0
    data = load_prepared(tmp_path / "data/prepared/fashion-mnist.npz")
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(data.y_train).tolist() == [6000] * 10 and np.bincount(data.y_test).tolist() == [1000] * 10
    manifest = json.loads((tmp_path / "data/prepared/fashion-mnist.json").read_text())
    order = fashion_mnist.train_order(60000, 0)
    assert manifest["meta"]["train_order"]["sha256_int64"] == hashlib.sha256(order.astype("<i8").tobytes()).hexdigest()
    with gzip.open(gz) as fh:
        first = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(60000, 28, 28)[order[0]]
    np.testing.assert_array_equal(data.x_train[0, ..., 0], first)


def test_classifier_gate_and_floor_on_idx_fixtures(tmp_path, work, capsys):
    """prepare -> classifier (gated on min_accuracy) -> score-real against the test split, on small idx files."""
    wd, table = work
    write_set(tmp_path / "raw", make_set(n_train=60, n_test=20), True, table)
    params_path = _params(tmp_path, tmp_path / "raw", tmp_path / "no-system")
    params = yaml.safe_load(params_path.read_text())
    params["datasets"]["fashion-mnist"]["classifier"].update(width=4, feat_dim=8, epochs=3, batch_size=10,
                                                             min_accuracy=0.999)
    params["datasets"]["fashion-mnist"]["score"].update(kid_subsets=5, kid_subset_size=10)
    params_path.write_text(yaml.safe_dump(params))
    assert _prepare(params_path) == 0
    cli = ["--dataset", "fashion-mnist", "--params", str(params_path), "--no-progress"]
    # a perfect score is out of reach after 3 epochs: the gate refuses the classifier and writes nothing
    assert main(["classifier", *cli]) == 1
    assert "min_accuracy 0.999" in capsys.readouterr().err
    assert not (wd / "models/fashion-mnist/classifier.pt").exists()
    assert not (wd / "results/fashion-mnist/classifier.json").exists()
    params["datasets"]["fashion-mnist"]["classifier"]["min_accuracy"] = 0.01
    params_path.write_text(yaml.safe_dump(params))
    assert main(["classifier", *cli]) == 0
    report = json.loads((wd / "results/fashion-mnist/classifier.json").read_text())
    assert report["n_test"] == 20 and 0 <= report["test_accuracy"] <= 1
    assert main(["score-real", *cli]) == 0
    floor = json.loads((wd / "results/fashion-mnist/real/metrics.json").read_text())
    assert floor["reference"] == "test" and floor["n_reference"] == 20 and floor["n_samples"] == 20
    assert "first 20 training images" in floor["samples"]
    assert {"fd_fashion", "kid_fashion", "kid_fashion_std", "fd_fashion_cleanfid"} <= set(floor)
    assert not any(k.startswith("fd_fashion-") for k in floor)


@pytest.mark.slow
def test_snakemake_fashion_runs_the_chain_and_dvc_repro_the_data_stages(tmp_path, monkeypatch):
    """`snakemake --cores 2 fashion` end to end (prepare -> classifier -> train -> sample -> score -> experiments ->
    tables -> check, the official mnist nets, tiny iteration counts) on idx fixtures in a copy of the repository,
    then `dvc repro` of its data stages: the same bytes from the other tool."""
    from test_workflows import dvc_ran, run, set_param, tiny_copy

    table = tmp_path / "checksums.json"
    write_set(tmp_path / "raw", make_set(n_train=60, n_test=20), True, table)
    monkeypatch.setenv(TEST_CHECKSUMS_ENV, str(table))  # the workflows' jobs inherit it
    root = tiny_copy(tmp_path / "repo")
    set_param(root, ["datasets", "fashion-mnist", "prepare", "raw_dir"], str(tmp_path / "raw"))
    set_param(root, ["datasets", "fashion-mnist", "classifier"],
              {"width": 4, "feat_dim": 8, "epochs": 2, "batch_size": 10, "lr": 0.002, "seed": 0, "min_accuracy": 0.01})
    set_param(root, ["datasets", "fashion-mnist", "score"],
              {"reference": "test", "kid_subsets": 5, "kid_subset_size": 10, "batch_size": 50})
    tiny = {"epochs": 1, "batch_size": 20, "seeds": [0], "log_every": 1, "checkpoint_every": 2}
    methods = yaml.safe_load((root / "params.yaml").read_text())["datasets"]["fashion-mnist"]["methods"]
    assert set(methods) == {"coopvaebm", "vae"}
    methods["coopvaebm"].update(tiny, n_chains=8, langevin={**methods["coopvaebm"]["langevin"], "train_steps": 2,
                                                             "test_steps": 2})
    methods["vae"].update(tiny)
    set_param(root, ["datasets", "fashion-mnist", "methods"], methods)
    set_param(root, ["datasets", "fashion-mnist", "sample", "n_samples"], 20)
    set_param(root, ["datasets", "fashion-mnist", "experiments", "n_images"], 20)
    # params.yaml's bounds are for the committed 600-update runs; tiny runs are checked against loose ones,
    # so the check stage still runs and writes its report
    set_param(root, ["check", "fashion-mnist"], [{"metric": "real.fd_fashion", "max": 1.0e9},
                                                  {"metric": "coopvaebm.fd_fashion", "max": 1.0e9}])
    run(["snakemake", "--cores", "2", "fashion"], root)
    for method in ("coopvaebm", "vae"):
        metrics = json.loads((root / f"results/fashion-mnist/{method}/seed0/metrics.json").read_text())
        assert {"fd_fashion", "fd_fashion_vae", "kid_fashion"} <= set(metrics), method  # proposals scored too
        assert (root / f"models/fashion-mnist/{method}/seed0.pt").is_file()
    for exp in ("completion", "reconstruction", "interpolation", "trajectory"):
        assert (root / f"results/fashion-mnist/coopvaebm/seed0/{exp}.png").is_file(), exp
    table = (root / "results/tables/fashion-mnist.md").read_text()
    assert "fd_fashion (Langevin-revised)" in table and "| coopvaebm | 1 | 1 |" in table and "| vae | 1 | 1 |" in table
    assert [c["metric"] for c in json.loads((root / "results/fashion-mnist/check.json").read_text())["checks"]] == [
        "real.fd_fashion", "coopvaebm.fd_fashion"]
    outputs = ["data/prepared/fashion-mnist.npz", "data/prepared/fashion-mnist.json", "models/fashion-mnist/classifier.pt",
               "results/fashion-mnist/classifier.json", "results/fashion-mnist/real/metrics.json"]
    for f in outputs:
        assert (root / f).is_file(), f
    assert "fd_fashion" in json.loads((root / "results/fashion-mnist/real/metrics.json").read_text())
    first = {f: (root / f).read_bytes() for f in outputs if not f.endswith("metrics.json")}
    for f in outputs:
        (root / f).unlink()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # what Snakemake gave its torch jobs (--cores 2): the same floats
    out = run(["dvc", "repro", "score_real@fashion-mnist"], root).stdout
    assert dvc_ran(out) == {"prepare@fashion-mnist", "classifier@fashion-mnist", "score_real@fashion-mnist"}
    assert {f: (root / f).read_bytes() for f in first} == first  # the same bytes from the other tool
