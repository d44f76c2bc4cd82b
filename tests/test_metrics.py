"""The digits feature classifier and the scores computed through torch-fidelity and clean-fid."""

import argparse

import numpy as np
import pytest
import scipy.linalg
import torch

from pipeline.data import digits
from pipeline.features import load_classifier, train_classifier
from pipeline.metrics import cleanfid_fd, fidelity_scores

KW = dict(width=32, feat_dim=64, batch_size=64, lr=0.002, seed=0, progress=False)


@pytest.fixture(scope="module")
def data():
    return digits.prepare({"resolution": 16, "test_fraction": 0.3, "split_seed": 0})


@pytest.fixture(scope="module")
def clf_path(data, tmp_path_factory):
    ckpt, acc = train_classifier(data.x_train, data.y_train, data.x_test, data.y_test, epochs=15, **KW)
    assert acc >= 0.95, acc
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    torch.save(ckpt, path)
    return str(path)


def test_classifier_training_is_deterministic(data):
    a, acc_a = train_classifier(data.x_train, data.y_train, data.x_test, data.y_test, epochs=2, **KW)
    b, acc_b = train_classifier(data.x_train, data.y_train, data.x_test, data.y_test, epochs=2, **KW)
    assert acc_a == acc_b
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def scipy_fd(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_torch_fidelity_fd_matches_independent_scipy(data, clf_path):
    net = load_classifier(clf_path)
    with torch.no_grad():
        feats = [net.features(torch.from_numpy(x).permute(0, 3, 1, 2).float()).double().numpy()
                 for x in (data.x_test, data.x_train)]
    expected = scipy_fd(*feats)
    got = fidelity_scores(data.x_test, data.x_train, clf_path, kid_subsets=10, kid_subset_size=200)["fd"]
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_cleanfid_agrees_with_torch_fidelity(data, clf_path):
    tf = fidelity_scores(data.x_test[:300], data.x_train, clf_path, kid_subsets=10, kid_subset_size=200)["fd"]
    cf = cleanfid_fd(data.x_test[:300], data.x_train, clf_path)
    assert cf == pytest.approx(tf, rel=1e-4)


def test_scores_order_real_above_noise(data, clf_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=data.x_test.shape, dtype=np.uint8)
    real = fidelity_scores(data.x_test, data.x_train, clf_path, kid_subsets=10, kid_subset_size=300)
    bad = fidelity_scores(noise, data.x_train, clf_path, kid_subsets=10, kid_subset_size=300)
    same = fidelity_scores(data.x_train, data.x_train, clf_path, kid_subsets=10, kid_subset_size=300)
    assert same["fd"] < 1e-6
    assert bad["fd"] > 20 * real["fd"] and bad["kid"] > real["kid"] + 0.1


def test_bad_input_names_expected_format(data, clf_path):
    with pytest.raises(ValueError, match="uint8 images N×H×W×C"):
        fidelity_scores(data.x_test.astype(np.float32), data.x_train, clf_path, kid_subsets=2, kid_subset_size=10)


def test_missing_or_foreign_classifier_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="not found.*classifier stage"):
        load_classifier(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"arch": {"channels": 1}, "oops": argparse.Namespace(a=1)}, bad)  # not allowed by weights_only
    with pytest.raises(RuntimeError, match="not a feature-classifier checkpoint"):
        load_classifier(bad)
