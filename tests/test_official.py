"""The authors' CIFAR-10 checkpoint through our evaluation: the TF checkpoint reader (bit-exact, CRC-checked)
on a checkpoint written by the official code's own saver, the import stage, a round trip from our own
weights, and sample/score on the imported model."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline import official, tfcheckpoint, tflayout
from pipeline.__main__ import main
from pipeline.config import load_params
from pipeline.nets import build_models
from pipeline.stages.checkpoints import load_checkpoint
from test_paper_pipeline import weights_dir  # noqa: F401  (the module-scoped random-weight Inception files)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests/fixtures/tf_checkpoint"
VARIABLES = json.loads((FIXTURE / "variables.json").read_text())["variables"]
PREFIX = "model.ckpt-3000"
DATA = f"{PREFIX}.data-00000-of-00001"

# The two rule forms of variables.json, matched strictly; only the captured numbers are used (no eval).
FLOAT_RULE = re.compile(r"\(\(np\.arange\((\d+)\) % (\d+)\)\.astype\(np\.float64\) \* ([0-9.e-]+) \+ (\d+)\)"
                        r"\.astype\(np\.float32\)\.reshape\(\(([0-9, ]*)\)\)")
INT_RULE = re.compile(r"np\.full\(\(([0-9, ]*)\), (\d+), dtype=np\.int32\)")


def expected(rule: str) -> np.ndarray:
    """The array a variables.json rule describes, built from its numbers only."""
    def shape(s: str) -> tuple[int, ...]:
        return tuple(int(x) for x in s.split(",") if x.strip())

    if m := FLOAT_RULE.fullmatch(rule):
        n, mod, scale, j, s = m.groups()
        return ((np.arange(int(n)) % int(mod)).astype(np.float64) * float(scale) + int(j)).astype(
            np.float32).reshape(shape(s))
    if m := INT_RULE.fullmatch(rule):
        return np.full(shape(m.group(1)), int(m.group(2)), dtype=np.int32)
    raise AssertionError(f"unrecognised rule {rule!r}")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """The fixture checkpoint with its data file decompressed."""
    d = tmp_path_factory.mktemp("tfckpt")
    shutil.copy(FIXTURE / f"{PREFIX}.index", d)
    with gzip.open(FIXTURE / f"{DATA}.gz") as src, open(d / DATA, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return d


@pytest.fixture(scope="module")
def tensors(ckpt_dir) -> dict[str, np.ndarray]:
    return tfcheckpoint.read_checkpoint(ckpt_dir / PREFIX)


def test_crc32c_known_value():
    assert tfcheckpoint.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    big = np.random.default_rng(0).integers(0, 256, 3 * 4096 + 17, dtype=np.uint8).tobytes()
    assert tfcheckpoint.crc32c(big) == tfcheckpoint._raw_serial(big, 0xFFFFFFFF) ^ 0xFFFFFFFF


def test_index_entries_match_the_recorded_bundle_entries(ckpt_dir):
    entries = tfcheckpoint.read_index(ckpt_dir / f"{PREFIX}.index")
    assert len(entries) == len(VARIABLES) == 116
    for v in VARIABLES:
        e, rec = entries[v["name"]], v["bundle_entry"]
        assert (e.dtype, e.offset, e.size, e.crc32c_masked) == (rec["dtype_enum"], rec["offset"], rec["size"],
                                                                rec["crc32c_masked"]), v["name"]
        assert e.shape == tuple(v["shape"]), v["name"]


def test_every_tensor_bit_exact(tensors):
    assert set(tensors) == {v["name"] for v in VARIABLES}
    for v in VARIABLES:
        want = expected(v["rule"])
        got = tensors[v["name"]]
        assert got.dtype == want.dtype and got.shape == want.shape, v["name"]
        assert got.tobytes() == want.tobytes(), v["name"]


def test_corrupted_byte_is_detected(ckpt_dir, tmp_path):
    shutil.copy(ckpt_dir / f"{PREFIX}.index", tmp_path)
    data = bytearray((ckpt_dir / DATA).read_bytes())
    victim = next(v for v in VARIABLES if v["name"] == "des/conv2/kernel")
    data[victim["bundle_entry"]["offset"] + 123] ^= 0x01
    (tmp_path / DATA).write_bytes(bytes(data))
    with pytest.raises(tfcheckpoint.CheckpointError, match="des/conv2/kernel: CRC32C mismatch"):
        tfcheckpoint.read_checkpoint(tmp_path / PREFIX)


def test_import_maps_every_trainable_tensor_and_lists_the_rest(ckpt_dir, tmp_path, caplog):
    params = load_params(ROOT / "params.yaml")
    out = tmp_path / "official.pt"
    with caplog.at_level("INFO", logger="pipeline.official"):
        skipped = official.import_official(params, ckpt_dir / PREFIX, out)
    trainable = {v["name"] for v in VARIABLES if v["trainable"]}
    assert trainable == set(tflayout.BY_TF)  # the layout table covers exactly the official graph's weights
    assert set(skipped) == {v["name"] for v in VARIABLES} - trainable
    assert "Variable" in skipped and "beta1_power" in skipped and "VAE_generator/BatchNorm/moving_mean" in skipped
    assert "ignored VAE_encoder/conv1/kernel/Adam_1" in caplog.text
    arch = {"channels": 3, "size": 32, **params["datasets"]["cifar10"]["nets"]}
    models = load_checkpoint(out, "cifar10", "official", arch, torch.device("cpu"))
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["iterations"] == 3000 and ckpt["method"] == "official"
    fmap = tflayout.encoder_map_shape(models)
    for v in VARIABLES:
        if v["trainable"]:
            e = tflayout.BY_TF[v["name"]]
            ours = models[e.module].state_dict()[e.param].cpu().numpy()
            assert np.array_equal(tflayout.to_tf(e, ours, fmap), expected(v["rule"])), v["name"]


def test_unknown_variable_and_wrong_shape_are_refused(ckpt_dir, tmp_path):
    params = load_params(ROOT / "params.yaml")
    tensors = tfcheckpoint.read_checkpoint(ckpt_dir / PREFIX)
    write_bundle(tmp_path / PREFIX, {**tensors, "des/conv9/kernel": np.zeros((3, 3, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="des/conv9/kernel"):
        official.import_official(params, tmp_path / PREFIX, tmp_path / "x.pt")
    write_bundle(tmp_path / PREFIX, {**tensors, "des/fc/bias": np.zeros((2,), np.float32)})
    with pytest.raises(ValueError, match="des/fc/bias"):
        official.import_official(params, tmp_path / PREFIX, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


# ---- a writer of the same format, for the round trip ------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB block with a restart point at every entry (no key sharing)."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    for r in restarts or [0]:
        body += struct.pack("<I", r)
    return bytes(body + struct.pack("<I", len(restarts or [0])))


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write index + data of a one-shard V2 checkpoint (the layout TF's BundleWriter produces)."""
    dtype_enum = {np.dtype(np.float32): 1, np.dtype(np.int32): 3}
    data, entries = bytearray(), [(b"", b"\x08\x01\x1a\x02\x08\x01")]  # header: num_shards 1, version 1
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        dims = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(s) for s in tensors[name].shape))
        proto = (b"\x08" + _varint(dtype_enum[tensors[name].dtype]) + b"\x12" + _varint(len(dims)) + dims
                 + (b"\x20" + _varint(len(data)) if data else b"") + b"\x28" + _varint(len(raw))
                 + b"\x35" + struct.pack("<I", tfcheckpoint.mask(tfcheckpoint.crc32c(raw))))
        entries.append((name.encode(), proto))
        data += raw
    out = bytearray()

    def put(block: bytes) -> tuple[int, int]:
        off = len(out)
        out.extend(block + b"\x00" + struct.pack("<I", tfcheckpoint.mask(tfcheckpoint.crc32c(block + b"\x00"))))
        return off, len(block)

    d_off, d_size = put(_block(entries))
    m_off, m_size = put(_block([]))
    i_off, i_size = put(_block([(entries[-1][0] + b"\xff", _varint(d_off) + _varint(d_size))]))
    handles = _varint(m_off) + _varint(m_size) + _varint(i_off) + _varint(i_size)
    out += handles + b"\x00" * (40 - len(handles)) + struct.pack("<Q", tfcheckpoint.MAGIC)
    prefix.with_name(prefix.name + ".index").write_bytes(bytes(out))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))


def test_writer_reproduces_the_fixture_tensors(tensors, tmp_path):
    """The test writer is a faithful one: its files read back like the official saver's."""
    write_bundle(tmp_path / PREFIX, tensors)
    again = tfcheckpoint.read_checkpoint(tmp_path / PREFIX)
    assert all(again[k].tobytes() == v.tobytes() and again[k].shape == v.shape for k, v in tensors.items())


def test_round_trip_our_weights_through_import(tensors, tmp_path):
    params = load_params(ROOT / "params.yaml")
    nets = params["datasets"]["cifar10"]["nets"]
    torch.manual_seed(7)
    ours = build_models(3, 32, nets)
    with torch.no_grad():  # every parameter distinct from a fresh init, so a dropped copy shows
        for m in ours.values():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.01)
    fmap = tflayout.encoder_map_shape(ours)
    written = dict(tensors)  # the optimiser state and step stay those of the official saver's file
    for e in tflayout.TABLE:
        written[e.tf] = np.ascontiguousarray(tflayout.to_tf(e, ours[e.module].state_dict()[e.param].numpy(), fmap))
    write_bundle(tmp_path / PREFIX, written)
    out = tmp_path / "official.pt"
    official.import_official(params, tmp_path / PREFIX, out)
    back = torch.load(out, weights_only=True)["models"]
    for name, m in ours.items():
        for k, v in m.state_dict().items():
            assert torch.equal(back[name][k], v), f"{name}.{k}"


def test_missing_checkpoint_exits_1_naming_the_file_and_zip(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "import-official", "--checkpoint",
                           str(tmp_path / PREFIX)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    err = " ".join((proc.stdout + proc.stderr).split())
    assert "model.ckpt-3000" in err and "checkpoints.zip" in err and "jianwen-xie/CoopVAEBM" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_sample_and_score_the_imported_checkpoint(ckpt_dir, tmp_path, weights_dir, monkeypatch, checksums):
    """import-official → sample → score → paper tables, offline, on the fixture (pattern weights)."""
    from test_datasets import write_cifar
    from test_paper_pipeline import tiny_cifar_params

    raw = tmp_path / "raw"
    write_cifar(raw)
    checksums(raw / "cifar-10-python.tar.gz")
    path = tiny_cifar_params(tmp_path, raw, weights_dir)
    params = yaml.safe_load(path.read_text())
    c = params["datasets"]["cifar10"]
    c["nets"] = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["cifar10"]["nets"]  # official size
    c["methods"]["official"].update(checkpoint=str(ckpt_dir / PREFIX), n_chains=6)
    c["methods"]["official"]["langevin"] = {**c["methods"]["official"]["langevin"], "test_steps": 2}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    args = ["--params", str(path), "--no-progress"]
    for stage in (["prepare", "--dataset", "cifar10"], ["reference", "--dataset", "cifar10"], ["import-official"],
                  ["sample", "--dataset", "cifar10", "--method", "official"],
                  ["score", "--dataset", "cifar10", "--method", "official"], ["paper-tables"]):
        assert main([*stage, *args]) == 0, stage
    with np.load(tmp_path / "results/cifar10/official/seed0/samples.npz") as z:
        assert len(z["revised"]) == len(z["vae"]) == 12 and np.isfinite(z["revised"].astype(np.float64)).all()
    m = json.loads((tmp_path / "results/cifar10/official/seed0/metrics.json").read_text())["official"]
    assert isinstance(m["fid"], float) and m["n_samples"] == 6
    paper = (tmp_path / "results/tables/paper.md").read_text()
    assert f"| cifar10 | authors' checkpoint, our evaluation | FID | 36.20 | {m['fid']:.2f} |" in paper
