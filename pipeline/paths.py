"""Where every stage reads and writes: the one place file names are made (Snakefile and dvc.yaml list the same)."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data/prepared")
MODELS = Path("models")
RESULTS = Path("results")
LOGS = Path("logs")


def prepared(dataset: str) -> Path:
    return DATA / f"{dataset}.npz"


def manifest(dataset: str) -> Path:
    return DATA / f"{dataset}.json"


def reference_features(dataset: str) -> Path:
    """Inception features of the real reference images (paper datasets), computed once."""
    return Path("data/reference") / f"{dataset}.npz"


def classifier(dataset: str) -> Path:
    return MODELS / dataset / "classifier.pt"


def classifier_metrics(dataset: str) -> Path:
    return RESULTS / dataset / "classifier.json"


def checkpoint(dataset: str, method: str) -> Path:
    return MODELS / dataset / f"{method}.pt"


def curves(dataset: str, method: str) -> Path:
    return RESULTS / dataset / method / "train" / "curves.csv"


def curves_png(dataset: str, method: str) -> Path:
    return RESULTS / dataset / method / "train" / "curves.png"


def samples(dataset: str, method: str) -> Path:
    return RESULTS / dataset / method / "samples.npz"


def samples_png(dataset: str, method: str) -> Path:
    return RESULTS / dataset / method / "samples.png"


def metrics(dataset: str, method: str) -> Path:
    """``method`` may also be ``real`` (the held-out real images: the floor)."""
    return RESULTS / dataset / method / "metrics.json"


def table(dataset: str, ext: str) -> Path:
    return RESULTS / "tables" / f"{dataset}.{ext}"


def check_report(dataset: str) -> Path:
    return RESULTS / dataset / "check.json"


def state_dir(dataset: str, method: str) -> Path:
    """Resumable training state of one run (git-ignored): not a declared output, so no workflow tool deletes it."""
    return Path("state") / dataset / method


def train_state(dataset: str, method: str) -> Path:
    return state_dir(dataset, method) / "train_state.pt"
