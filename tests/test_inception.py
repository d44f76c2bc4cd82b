"""Offline tests of pipeline.inception with randomly initialised weights in the real file formats.

The reference numbers come from the libraries' own end-to-end entry points (torch-fidelity's
calculate_metrics on a Dataset, clean-fid's compute_fid on PNG folders), so agreement shows that
``extract`` feeds the networks exactly as they do and ``scores`` calls the same metric code.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from pipeline import inception as inc
from pipeline.metrics import Uint8Images

N_SAMPLES, N_REF, BATCH = 24, 20, 12
KID_SUBSETS, KID_SUBSET_SIZE = 10, 16
CPU = torch.device("cpu")
REL = 1e-6

pytestmark = [
    # With fewer images than 2048 dims the covariances are singular; real runs (50k images) are not.
    pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning"),
    # Library-internal deprecations (clean-fid's sqrtm(disp=...), its torch.jit.load), not ours to fix.
    pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]


def _images(n: int, seed: int, smooth: bool) -> np.ndarray:
    """Structured uint8 images: blocky colour fields (smooth) or noise around a per-image gradient."""
    rng = np.random.default_rng(seed)
    if smooth:
        coarse = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float64)
        img = np.kron(coarse, np.ones((1, 8, 8, 1))) + rng.normal(0, 8, (n, 32, 32, 3))
    else:
        ramp = np.linspace(0, 1, 32)[None, :, None, None] * rng.uniform(50, 250, (n, 1, 1, 3))
        img = ramp + rng.normal(0, 40, (n, 32, 32, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> inc.InceptionWeights:
    return inc.write_random_weights(tmp_path_factory.mktemp("weights"), seed=0)


@pytest.fixture(scope="module")
def sets() -> tuple[np.ndarray, np.ndarray]:
    return _images(N_SAMPLES, 1, smooth=True), _images(N_REF, 2, smooth=False)


@pytest.fixture(scope="module")
def feats(weights, sets) -> tuple[dict, dict]:
    samples, reference = sets
    return tuple(inc.extract(x, weights, batch_size=BATCH, device=CPU, progress=False) for x in (samples, reference))


@pytest.fixture(scope="module")
def ours(feats) -> dict[str, float]:
    return inc.scores(*feats, kid_subsets=KID_SUBSETS, kid_subset_size=KID_SUBSET_SIZE)


@pytest.fixture
def no_caches(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """Point both library caches at empty temporary dirs and clear the env var, so no real cache is seen."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(inc, "CLEANFID_CACHE_DIR", tmp_path / "cleanfid_cache")
    monkeypatch.delenv(inc.ENV_VAR, raising=False)
    return tmp_path / "torch_home", tmp_path / "cleanfid_cache"


def _placeholders(directory: Path) -> inc.InceptionWeights:
    directory.mkdir(parents=True, exist_ok=True)
    for name in (inc.fidelity_filename(), inc.CLEANFID_FILENAME):
        (directory / name).write_bytes(b"")
    return inc.InceptionWeights(directory / inc.fidelity_filename(), directory / inc.CLEANFID_FILENAME)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# ------------------------------------------------------------------------------------------ discovery


def test_real_file_names_and_urls():
    assert inc.fidelity_filename() == "weights-inception-2015-12-05-6726825d.pth"
    assert inc.fidelity_url().endswith("/" + inc.fidelity_filename())
    assert inc.cleanfid_url().endswith("/" + inc.CLEANFID_FILENAME)


def test_find_weights_in_config_dir(tmp_path, no_caches):
    expected = _placeholders(tmp_path / "cfg")
    assert inc.find_weights(tmp_path / "cfg", download=False) == expected


def test_find_weights_via_env_var(tmp_path, no_caches, monkeypatch):
    expected = _placeholders(tmp_path / "env")
    monkeypatch.setenv(inc.ENV_VAR, str(tmp_path / "env"))
    assert inc.find_weights(None, download=False) == expected


def test_config_dir_comes_before_env_var_and_caches(tmp_path, no_caches, monkeypatch):
    torch_home, cleanfid_cache = no_caches
    _placeholders(tmp_path / "env")
    _placeholders(torch_home / "hub" / "checkpoints")
    _placeholders(cleanfid_cache)
    monkeypatch.setenv(inc.ENV_VAR, str(tmp_path / "env"))
    assert inc.find_weights(tmp_path / "cfg_absent", download=False).fidelity_pth.parent == tmp_path / "env"
    assert inc.find_weights(_placeholders(tmp_path / "cfg").fidelity_pth.parent, download=False) == \
        _placeholders(tmp_path / "cfg")


def test_find_weights_in_library_caches(no_caches):
    torch_home, cleanfid_cache = no_caches
    got = inc.InceptionWeights(_placeholders(torch_home / "hub" / "checkpoints").fidelity_pth,
                               _placeholders(cleanfid_cache).cleanfid_pt)
    assert inc.find_weights(None, download=False) == got


def test_missing_weights_message(tmp_path, no_caches):
    (tmp_path / "empty").mkdir()
    with pytest.raises(inc.WeightsError) as err:
        inc.find_weights(tmp_path / "empty", download=False)
    msg = str(err.value)
    for needed in (inc.fidelity_filename(), inc.CLEANFID_FILENAME, inc.fidelity_url(), inc.cleanfid_url(),
                   inc.ENV_VAR, inc.CONFIG_KEY, str(tmp_path / "empty"), str(no_caches[1]),
                   str(no_caches[0] / "hub" / "checkpoints"), inc.SIZE_NOT_VERIFIED):
        assert needed in msg, needed


def _online() -> bool:
    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_download_fails_fast_offline(tmp_path, no_caches):
    if _online():
        pytest.skip("network reachable: this checks the offline failure path only")
    (tmp_path / "empty").mkdir()
    start = time.monotonic()
    with pytest.raises(inc.WeightsError, match="download failed") as err:
        inc.find_weights(tmp_path / "empty", download=True)
    assert time.monotonic() - start < 40
    assert str(err.value).count("download failed") == 2
    # No partial file may be left to be "found" next time.
    for cache in (no_caches[0], no_caches[1]):
        assert not [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else True


# ------------------------------------------------------------------------------------------ features and scores


def test_features_shapes(feats):
    for f, n in zip(feats, (N_SAMPLES, N_REF)):
        assert set(f) == set(inc.FEATURE_KEYS)
        assert f[inc.FIDELITY_LOGITS].shape == (n, 1008)
        for k in (inc.FIDELITY_POOL, "cleanfid_clean", "cleanfid_legacy_tensorflow"):
            assert f[k].shape == (n, 2048) and f[k].dtype == np.float32 and np.isfinite(f[k]).all()


def test_matches_torch_fidelity(weights, sets, ours):
    import torch_fidelity

    ref = torch_fidelity.calculate_metrics(
        input1=Uint8Images(sets[0]), input2=Uint8Images(sets[1]), cuda=False, isc=True, fid=True, kid=True,
        feature_extractor_weights_path=str(weights.fidelity_pth), kid_subsets=KID_SUBSETS,
        kid_subset_size=KID_SUBSET_SIZE, batch_size=BATCH, verbose=False, cache=False, save_cpu_ram=True,
        rng_seed=2020,
    )
    assert ours["inception_score_mean"] > 1.2  # the random logits must make IS non-trivial
    pairs = {"inception_score_mean": "inception_score_mean", "inception_score_std": "inception_score_std",
             "fid": "frechet_inception_distance", "kid_mean": "kernel_inception_distance_mean",
             "kid_std": "kernel_inception_distance_std"}
    for k, lib in pairs.items():
        assert _rel(ours[k], float(ref[lib])) < REL, (k, ours[k], ref[lib])


def _write_pngs(images: np.ndarray, folder: Path) -> None:
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:04d}.png")


@pytest.mark.parametrize("mode", ["clean", "legacy_tensorflow"])
def test_matches_cleanfid(mode, weights, sets, ours, tmp_path):
    from cleanfid import fid
    from cleanfid.inception_torchscript import InceptionV3W

    _write_pngs(sets[0], tmp_path / "samples")
    _write_pngs(sets[1], tmp_path / "reference")
    model = InceptionV3W(str(weights.cleanfid_pt.parent), download=False, resize_inside=mode == "legacy_tensorflow")
    ref = fid.compute_fid(str(tmp_path / "samples"), str(tmp_path / "reference"), mode=mode,
                          custom_feat_extractor=model.eval(), batch_size=BATCH, num_workers=0, device=CPU,
                          verbose=False, use_dataparallel=False)
    assert _rel(ours[f"fid_cleanfid_{mode}"], float(ref)) < REL, (ours[f"fid_cleanfid_{mode}"], ref)


def test_fid_matches_independent_sqrtm(feats, ours):
    f1, f2 = (f[inc.FIDELITY_POOL].astype(np.float64) for f in feats)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert _rel(ours["fid"], expected) < REL, (ours["fid"], expected)


def test_memmap_input_streams_identically(weights, sets, feats, tmp_path):
    # The first BATCH images form the same first batch in both runs, so the features must be bit-identical.
    head = sets[0][:BATCH]
    mm = np.memmap(tmp_path / "images.u8", dtype=np.uint8, mode="w+", shape=head.shape)
    mm[:] = head
    mm.flush()
    mm = np.memmap(tmp_path / "images.u8", dtype=np.uint8, mode="r", shape=head.shape)
    got = inc.extract(mm, weights, batch_size=BATCH, device=CPU, progress=False)
    for k in inc.FEATURE_KEYS:
        np.testing.assert_array_equal(got[k], feats[0][k][:BATCH], err_msg=k)


def test_rejects_non_uint8(weights):
    with pytest.raises(ValueError, match="uint8"):
        inc.extract(np.zeros((2, 32, 32, 3), np.float32), weights, batch_size=2, device=CPU, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        inc.extract(np.zeros((2, 32, 32, 1), np.uint8), weights, batch_size=2, device=CPU, progress=False)


# ------------------------------------------------------------------- Fashion-MNIST's optional Inception scores


def test_fashion_scores_add_inception_only_when_the_weights_are_here(weights, tmp_path, no_caches, monkeypatch):
    """score_classifier_inception: grey 28x28 sets go through Inception as three equal channels and score exactly
    as ``inception.scores`` does on those RGB images' features (one extraction pass, watched by a spy that calls the
    real one); without weight files the stage adds nothing (and downloads nothing). A pass costs ~20 s on CPU."""
    from pipeline.stages import score_classifier_inception as sci

    n, batch, kid = 4, 4, {"kid_subsets": 2, "kid_subset_size": 4}
    rng = np.random.default_rng(5)
    grey = {"": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
            "_vae": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)}
    ref = np.clip(rng.normal(128, 30, (n, 28, 28, 1)), 0, 255).astype(np.uint8)
    scfg = {**kid, "inception": {"weights_dir": str(weights.fidelity_pth.parent), "isc_splits": 2, "batch_size": batch}}
    seen = []  # a spy on the real extraction (one pass over the reference and both sets)

    def spy(images, cfg, w, progress):
        seen.append((images, real(images, cfg, w, progress)))
        return seen[-1][1]

    real = sci.inception_features
    monkeypatch.setattr(sci, "inception_features", spy)
    block = sci._inception_block(scfg, grey, ref, progress=False)
    assert len(seen) == 1 and np.array_equal(seen[0][0], np.repeat(np.concatenate([ref, grey[""], grey["_vae"]]), 3, 3))
    feats = seen[0][1]  # rows: the reference, then the revised set, then the proposals
    direct = inc.scores({k: v[n:2 * n] for k, v in feats.items()}, {k: v[:n] for k, v in feats.items()},
                        isc_splits=2, **kid)
    assert block["fid"] == pytest.approx(direct["fid"], rel=REL)
    assert block["inception_score"] == pytest.approx(direct["inception_score_mean"], rel=REL)
    assert block["kid"] == pytest.approx(direct["kid_mean"], rel=REL, abs=1e-12)
    assert {"fid_vae", "inception_score_vae", "kid_vae", "fid_cleanfid_clean_vae"} <= set(block)
    assert block["fid"] != pytest.approx(block["fid_vae"])  # two sets, two scores
    assert block["n_samples"] == n and block["n_reference"] == n and "torch-fidelity" in block["implementation"]
    missing = {**scfg, "inception": {**scfg["inception"], "weights_dir": str(tmp_path / "empty")}}
    assert sci._inception_block(missing, grey, ref, progress=False) is None
    assert sci._inception_block({k: v for k, v in scfg.items() if k != "inception"}, grey, ref, False) is None
