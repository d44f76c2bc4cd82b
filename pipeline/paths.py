"""Where every stage reads and writes: the one place file names are made (Snakefile and dvc.yaml list the same).

A trained run is (dataset, method, seed): its checkpoint is ``models/<dataset>/<method>/seed<k>.pt`` and
everything made from it lies under ``results/<dataset>/<method>/seed<k>/``. Stages that no seed enters
(prepare, reference, classifier, score-real) keep seedless paths.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data/prepared")
MODELS = Path("models")
RESULTS = Path("results")
LOGS = Path("logs")
# The experiments of the official code (completion = its `inpaint`, reconstruction = `recon`,
# interpolation = `inter`, trajectory = `visual`): the ones with a number write <name>.json too.
EXPERIMENTS = ("completion", "reconstruction", "interpolation", "trajectory")
SCORED_EXPERIMENTS = ("completion", "reconstruction")
# Scopes of the tables and the check: `all` = every method x seed in params.yaml; `ci` = the subset
# params.yaml `ci.<dataset>` names (what `make reproduce` runs), written beside under another name.
SCOPES = ("all", "ci")


def prepared(dataset: str) -> Path:
    return DATA / f"{dataset}.npz"


def manifest(dataset: str) -> Path:
    return DATA / f"{dataset}.json"


def reference_features(dataset: str) -> Path:
    """Inception features of the real reference images (paper datasets), computed once."""
    return Path("data/reference") / f"{dataset}.npz"


def weights_check(dataset: str) -> Path:
    """The marker of the Inception weights check (paper datasets), which every training run waits for."""
    return Path("data/reference") / f"{dataset}-weights.json"


def classifier(dataset: str) -> Path:
    return MODELS / dataset / "classifier.pt"


def classifier_metrics(dataset: str) -> Path:
    return RESULTS / dataset / "classifier.json"


def seed_dir(seed: int) -> str:
    """The one spelling of a seed in a path: ``seed<k>``."""
    return f"seed{int(seed)}"


def checkpoint(dataset: str, method: str, seed: int) -> Path:
    """The trained (or, for ``official``, imported: seed 0 labels the authors' one released run) nets."""
    return MODELS / dataset / method / f"{seed_dir(seed)}.pt"


def run_dir(dataset: str, method: str, seed: int) -> Path:
    return RESULTS / dataset / method / seed_dir(seed)


def curves(dataset: str, method: str, seed: int) -> Path:
    return run_dir(dataset, method, seed) / "train" / "curves.csv"


def curves_png(dataset: str, method: str, seed: int) -> Path:
    return run_dir(dataset, method, seed) / "train" / "curves.png"


def samples(dataset: str, method: str, seed: int) -> Path:
    return run_dir(dataset, method, seed) / "samples.npz"


def samples_png(dataset: str, method: str, seed: int) -> Path:
    return run_dir(dataset, method, seed) / "samples.png"


def metrics(dataset: str, method: str, seed: int | None = None) -> Path:
    """A run's scores; ``method`` ``real`` (the held-out real images: the floor) has no seed."""
    if method == "real" or seed is None:
        if method != "real":
            raise ValueError(f"the metrics of {dataset}/{method} need a seed")
        return RESULTS / dataset / "real" / "metrics.json"
    return run_dir(dataset, method, seed) / "metrics.json"


def experiment(dataset: str, method: str, seed: int, name: str, ext: str) -> Path:
    """An experiment's picture (``png``) or numbers (``json``) of one run."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r} (known: {', '.join(EXPERIMENTS)})")
    return run_dir(dataset, method, seed) / f"{name}.{ext}"


def table(stem: str, ext: str, scope: str = "all") -> Path:
    return RESULTS / "tables" / (f"{stem}.{ext}" if scope == "all" else f"{stem}-{scope}.{ext}")


def check_report(dataset: str, scope: str = "all") -> Path:
    return RESULTS / dataset / ("check.json" if scope == "all" else f"check-{scope}.json")


def state_dir(dataset: str, method: str, seed: int) -> Path:
    """Resumable training state of one run (git-ignored): not a declared output, so no workflow tool deletes it."""
    return Path("state") / dataset / method / seed_dir(seed)


def train_state(dataset: str, method: str, seed: int) -> Path:
    return state_dir(dataset, method, seed) / "train_state.pt"
