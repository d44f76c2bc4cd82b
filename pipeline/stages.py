"""The pipeline's stages: each reads its declared inputs, writes its declared outputs atomically.

A stage is ``stage(params, dataset, ...) -> None``; ``pipeline.__main__`` wraps each as a CLI
sub-command. Paths come from ``pipeline.paths``; hyperparameters from the validated params.
"""

from __future__ import annotations

import csv
import importlib
import io
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline import paths
from pipeline.atomic import all_or_none, read_torch, write_json, write_npz, write_text, write_torch, write_with
from pipeline.config import dataset_cfg, method_cfg
from pipeline.data import DataError, load_prepared, save_prepared

log = logging.getLogger("pipeline")
# Trained here: each is one step function in pipeline.teaching.STEPS; `official` is imported, not trained.
METHODS = ("coopvaebm", "coopvaebm-noise", "vae", "ebm", "coopnets")
# Methods whose samples are Langevin revisions on an EBM (the others sample their proposal only).
REVISED = ("coopvaebm", "coopvaebm-noise", "ebm", "coopnets", "official")
# 2: the generator pads transposed convolutions as TF "SAME" does (format 1 computed another function)
CHECKPOINT_FORMAT = 2
# Scored on its own classifier's features (fd_<dataset>); every other dataset with Inception.
EMBEDDED = ("digits",)


def prepare(params: dict, dataset: str, progress: bool = True) -> None:
    """Decode the dataset's real files to ``data/prepared/<dataset>.npz`` + JSON manifest.

    Nothing is written unless decoding succeeded: a missing or corrupt archive raises ``DataError``.
    """
    cfg = dataset_cfg(params, dataset)["prepare"]
    try:
        module = importlib.import_module(f"pipeline.data.{dataset}")
    except ModuleNotFoundError:
        raise DataError(f"dataset '{dataset}' has no prepare code (pipeline/data/{dataset}.py)") from None
    prepared = module.prepare(cfg)
    save_prepared(prepared, paths.prepared(dataset), paths.manifest(dataset))
    log.info("prepared %s: train %s, test %s (%s)", dataset, prepared.x_train.shape, prepared.x_test.shape,
             prepared.source)


def classifier(params: dict, dataset: str, progress: bool = True) -> None:
    """Train the domain feature extractor for fd_<dataset>/kid_<dataset>; fail if it is not accurate enough."""
    from pipeline.features import train_classifier

    cfg = dataset_cfg(params, dataset)["classifier"]
    data = load_prepared(paths.prepared(dataset))
    ckpt, acc = train_classifier(
        data.x_train, data.y_train, data.x_test, data.y_test, width=cfg["width"], feat_dim=cfg["feat_dim"],
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=cfg["seed"],
    )
    log.info("classifier test accuracy %.4f on %d held-out images", acc, len(data.y_test))
    if acc < cfg["min_accuracy"]:
        raise RuntimeError(
            f"the {dataset} feature classifier reached test accuracy {acc:.4f} < min_accuracy "
            f"{cfg['min_accuracy']} (params.yaml datasets.{dataset}.classifier): its features would not be "
            f"trustworthy for fd_{dataset}. Train longer (epochs) or wider (width)."
        )
    with all_or_none(paths.classifier(dataset), paths.classifier_metrics(dataset)):
        write_torch(paths.classifier(dataset), ckpt)
        write_json(paths.classifier_metrics(dataset), {"test_accuracy": acc, "n_test": int(len(data.y_test))})


def _device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _arch(data_shape: tuple[int, ...], nets_cfg: dict) -> dict:
    return {"channels": int(data_shape[3]), "size": int(data_shape[1]), **nets_cfg}


def run_cfg(params: dict, dataset: str, method: str, seed: int) -> dict:
    """The method's params section with the run's ``seed`` in it (what the trainer and the resume fingerprint read).

    The seed must be one of the method's ``seeds`` in params.yaml, so that every run the workflows
    plan is a configured one.
    """
    mcfg = method_cfg(params, dataset, method)
    seeds = mcfg.get("seeds", [0])
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not among datasets.{dataset}.methods.{method}.seeds {seeds} in params.yaml")
    return {**{k: v for k, v in mcfg.items() if k != "seeds"}, "seed": int(seed)}


def train(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
          progress: bool = True, on_epoch_end: Callable[[int, dict[str, torch.nn.Module]], None] | None = None) -> None:
    """Train ``method`` with training seed ``seed``; write the checkpoint and the training curves.

    The seed sets the nets' initialisation and the trainer's RNG (proposals, Langevin noise, the
    encoder's ε). Resumes a killed run from ``state/<dataset>/<method>/seed<k>/`` (``pipeline.resume``);
    a divergence raises ``DivergenceError``, keeps the last good state there and writes no declared output.
    ``on_epoch_end(epoch, models)``, when given, sees the nets after every epoch (studies of the
    training trajectory, ``benchmarks/epochs.py``); it must not change them or draw from torch's RNG.
    """
    from pipeline import resume
    from pipeline.nets import build_models
    from pipeline.sample import to_float
    from pipeline.teaching import NETS, DivergenceError, make_trainer, trainer_state
    from pipeline.teaching import train as run_training

    if method not in METHODS:
        raise ValueError(f"method {method!r} is not trained here (trained: {', '.join(METHODS)})")
    dcfg, mcfg = dataset_cfg(params, dataset), run_cfg(params, dataset, method, seed)
    dev = _device(device)
    data = load_prepared(paths.prepared(dataset))
    # channels-last: oneDNN/cuDNN convolutions run faster on NHWC (measured 1.2-1.8x for the
    # Langevin revision on CPU); the computation is the same.
    x = to_float(data.x_train, dev).contiguous(memory_format=torch.channels_last)
    arch = _arch(data.x_train.shape, dcfg["nets"])
    torch.manual_seed(mcfg["seed"])
    # All three nets are built (same initialisation order for every method), then the method's kept.
    models = {k: m.to(dev, memory_format=torch.channels_last)
              for k, m in build_models(arch["channels"], arch["size"], dcfg["nets"]).items() if k in NETS[method]}
    _maybe_compile(models, mcfg)
    trainer = make_trainer(method, models, mcfg, dev)
    log.info("training %s on %s: %d images %s, %d epochs, device %s", method, dataset, len(x), tuple(x.shape[1:]),
             mcfg["epochs"], dev)
    # Rolling resume state outside the declared outputs (pipeline.resume): a killed run resumes.
    state = paths.train_state(dataset, method, seed)
    fp = resume.fingerprint(dataset, method, dcfg["nets"], mcfg, data.x_train)
    start, rows = resume.resume(state, fp, trainer)
    outputs = [paths.checkpoint(dataset, method, seed), paths.curves(dataset, method, seed),
               paths.curves_png(dataset, method, seed)]

    def save(iteration: int, rows_so_far: list[dict]) -> None:
        resume.save_state(state, fp, trainer_state(trainer), iteration, rows_so_far)

    try:
        curves = run_training(method, trainer, x, mcfg, dcfg["nets"]["z_dim"], start, rows, save, progress=progress,
                              on_epoch_end=None if on_epoch_end is None else lambda e: on_epoch_end(e, models))
    except DivergenceError as exc:
        raise DivergenceError(resume.divergence_message(str(exc), state, exc.last_good, outputs), exc.iteration,
                              exc.last_good) from None
    with all_or_none(*outputs):
        _write_curves(curves, outputs[1], outputs[2], method)
        # The declared checkpoint last: it exists only when everything else of the run does.
        save_checkpoint(outputs[0], dataset, method, arch, models, int(curves[-1]["step"]))
    resume.clear_state(state)
    log.info("saved %s after %d iterations", outputs[0], curves[-1]["step"])


def _maybe_compile(models: dict[str, torch.nn.Module], mcfg: dict) -> None:
    """``compile: true``: torch.compile each net in place (its state_dict keys stay the same)."""
    if mcfg.get("compile", False):
        for m in models.values():
            m.compile()


def save_checkpoint(path: Path, dataset: str, method: str, arch: dict, models: dict[str, torch.nn.Module],
                    iterations: int) -> None:
    """Write the checkpoint format that ``load_checkpoint`` reads (tensors and plain values only)."""
    write_torch(path, {
        "format": CHECKPOINT_FORMAT,
        "dataset": dataset,
        "method": method,
        "arch": arch,
        "iterations": iterations,
        "models": {k: m.state_dict() for k, m in models.items()},
    })


def _write_curves(rows: list[dict], csv_path: Path, png_path: Path, title: str) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    write_text(csv_path, buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("energy_gap", "loss_vae", "loss_gen", "vae_rec", "vae_kl", "revision_l2") if k in rows[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r[k] for r in rows], lw=1)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: training curves", fontsize=10)
    fig.tight_layout()
    write_with(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    plt.close(fig)


def load_checkpoint(path: Path, dataset: str, method: str, arch: dict, device: torch.device, seed: int = 0) -> dict:
    """Load a checkpoint with ``weights_only=True`` and rebuild its nets; refuse one from another config."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found: run the train stage "
                                f"(python -m pipeline train --dataset {dataset} --method {method} --seed {seed}).")
    ckpt = read_torch(path, CHECKPOINT_FORMAT, "checkpoint", "Delete it and rerun the train stage.",
                      map_location=device)
    if ckpt["arch"] != arch:
        diff = {k: (ckpt["arch"].get(k), arch.get(k)) for k in set(arch) | set(ckpt["arch"])
                if ckpt["arch"].get(k) != arch.get(k)}
        raise RuntimeError(f"{path} was trained with another architecture than params.yaml asks for "
                           f"(key: (checkpoint, params)) {diff}. Retrain, or restore the params it was made with.")
    return models_from_states(arch, ckpt["models"], device)


def models_from_states(arch: dict, states: dict[str, dict], device: torch.device) -> dict[str, torch.nn.Module]:
    """Nets of ``arch`` holding the given state dicts (by net name), on ``device``, channels-last as in training."""
    from pipeline.nets import build_models

    models = build_models(arch["channels"], arch["size"], {k: arch[k] for k in arch if k not in ("channels", "size")})
    out = {}
    for name, state in states.items():
        models[name].load_state_dict(state)
        out[name] = models[name].to(device, memory_format=torch.channels_last)
    return out


def sample(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
           progress: bool = True) -> None:
    """Draw ``sample.n_samples`` images of run (method, seed): the proposals (``vae``: the VAE's or the
    generator's x̃), plus their Langevin revisions (``revised``) for the methods with an EBM; the
    short-run EBM's chains start from noise and it has only ``revised``.

    The sampling RNG is ``sample.seed`` for every run: the training seed alone makes runs differ.
    """
    from pipeline.pictures import save_grid
    from pipeline.sample import generate
    from pipeline.teaching import autocast

    dcfg = dataset_cfg(params, dataset)
    mcfg = method_cfg(params, dataset, method) if method == "official" else run_cfg(params, dataset, method, seed)
    dev = _device(device)
    data = load_prepared(paths.prepared(dataset))
    arch = _arch(data.x_train.shape, dcfg["nets"])
    models = load_checkpoint(paths.checkpoint(dataset, method, seed), dataset, method, arch, dev, seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(dcfg["sample"]["seed"])
    revise = method in REVISED
    chunk = mcfg["n_chains"] if revise else mcfg["batch_size"]
    langevin = mcfg["langevin"] if revise else None
    noise_init = mcfg.get("noise_init") if method == "ebm" else None
    _maybe_compile(models, mcfg)
    with autocast(mcfg, dev):
        out = generate(models, dcfg["sample"]["n_samples"], chunk, arch["z_dim"], langevin, gen, progress,
                       noise_init=noise_init, image_shape=(arch["channels"], arch["size"], arch["size"]))
    panels = {}
    if "vae" in out:
        panels["VAE sample x̃ = g(z)" if method != "coopnets" else "generator sample x̃ = g(z)"] = out["vae"]
    if "revised" in out:
        start = f"U[{noise_init['low']:g}, {noise_init['high']:g}] noise" if noise_init else "x̃"
        panels[f"after {langevin['test_steps']} Langevin steps x̂" + ("" if not noise_init else f" from {start}")] = \
            out["revised"]
    panels["real (test split)"] = data.x_test
    npz, png = paths.samples(dataset, method, seed), paths.samples_png(dataset, method, seed)
    with all_or_none(npz, png):
        write_npz(npz, **out)
        save_grid(png, panels)
    log.info("wrote %d samples of %s (seed %d) to %s", len(next(iter(out.values()))), method, seed, npz)


def _reference(data, which: str) -> np.ndarray:
    return data.x_train if which == "train" else data.x_test


def score(params: dict, dataset: str, method: str, seed: int = 0, progress: bool = True) -> None:
    """Score run (method, seed)'s samples (revised and proposal-only, where each exists) against the reference."""
    if dataset in EMBEDDED:
        _score_embedded(params, dataset, method, seed, progress)
    else:
        _score_inception(params, dataset, method, seed, progress)


def score_real(params: dict, dataset: str, progress: bool = True) -> None:
    """The floor: the held-out real test images scored exactly like samples."""
    scfg = dataset_cfg(params, dataset)["score"]
    if scfg["reference"] != "train":
        raise RuntimeError("the real-data floor scores the test split against the training split; "
                           f"datasets.{dataset}.score.reference must be 'train' for it to mean anything")
    if dataset in EMBEDDED:
        _score_real_embedded(params, dataset, progress)
    else:
        _score_real_inception(params, dataset, progress)


def _score_embedded(params: dict, dataset: str, method: str, seed: int, progress: bool) -> None:
    """fd_/kid_<dataset> on the dataset classifier's features."""
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    ref = _reference(data, scfg["reference"])
    clf = str(paths.classifier(dataset))
    with np.load(paths.samples(dataset, method, seed), allow_pickle=False) as z:
        sets = {k: z[k] for k in z.files}
    final = "revised" if "revised" in sets else "vae"
    # the proposal's own scores (``_vae``) where there is a proposal (not for the short-run EBM)
    pairs = [(final, "")] + ([("vae", "_vae")] if "vae" in sets else [])
    kw = dict(kid_subsets=scfg["kid_subsets"], kid_subset_size=scfg["kid_subset_size"],
              batch_size=scfg["batch_size"], verbose=progress)
    out: dict = {"reference": scfg["reference"], "n_reference": int(len(ref)), "n_samples": int(len(sets[final])),
                 "feature_extractor": f"{dataset} classifier ({clf})"}
    scores = {key: fidelity_scores(imgs, ref, clf, **kw) for key, imgs in sets.items()}
    for key, suffix in pairs:
        out[f"fd_{dataset}{suffix}"] = scores[key]["fd"]
        out[f"kid_{dataset}{suffix}"] = scores[key]["kid"]
        out[f"kid_{dataset}{suffix}_std"] = scores[key]["kid_std"]
    out[f"fd_{dataset}_cleanfid"] = cleanfid_fd(sets[final], ref, clf, batch_size=scfg["batch_size"])
    write_json(paths.metrics(dataset, method, seed), out)
    log.info("%s seed %d on %s: %s", method, seed, dataset, {k: v for k, v in out.items() if k.startswith(("fd_", "kid_"))})


def _score_real_embedded(params: dict, dataset: str, progress: bool) -> None:
    from pipeline.metrics import cleanfid_fd, fidelity_scores

    scfg = dataset_cfg(params, dataset)["score"]
    data = load_prepared(paths.prepared(dataset))
    clf = str(paths.classifier(dataset))
    s = fidelity_scores(data.x_test, data.x_train, clf, kid_subsets=scfg["kid_subsets"],
                        kid_subset_size=scfg["kid_subset_size"], batch_size=scfg["batch_size"], verbose=progress)
    out = {"reference": "train", "n_reference": int(len(data.x_train)), "n_samples": int(len(data.x_test)),
           f"fd_{dataset}": s["fd"], f"kid_{dataset}": s["kid"], f"kid_{dataset}_std": s["kid_std"],
           f"fd_{dataset}_cleanfid": cleanfid_fd(data.x_test, data.x_train, clf, batch_size=scfg["batch_size"])}
    write_json(paths.metrics(dataset, "real"), out)
    log.info("real test split on %s: %s", dataset, out)


# --------------------------------------------------------------------------------------------------
# Inception metrics on the paper's datasets.

def reference_images(data, which: str, n: int, dataset: str) -> np.ndarray:
    """The first ``n`` images of the reference set (official protocol: the first N training images)."""
    pool = {"train": lambda: data.x_train, "test": lambda: data.x_test,
            "train+test": lambda: np.concatenate([data.x_train, data.x_test])}[which]()
    if n > len(pool):
        raise ValueError(f"datasets.{dataset}.score.n_reference = {n}, but the '{which}' set of {dataset} has only "
                         f"{len(pool)} images: lower n_reference or choose a larger reference set")
    return pool[:n]


def _weights(scfg: dict):
    from pipeline.inception import find_weights

    return find_weights(scfg["inception_weights_dir"], download=scfg["download_weights"])


def reference(params: dict, dataset: str, progress: bool = True) -> None:
    """Inception features of the real reference images, computed once for every score stage.

    Runs before any training in the workflows, so a missing weight file stops the run early.
    """
    from pipeline.inception import extract, save_features

    if dataset in EMBEDDED:
        raise ValueError(f"{dataset} is scored on its classifier's features; the reference stage is for "
                         "the paper's datasets")
    scfg = dataset_cfg(params, dataset)["score"]
    weights = _weights(scfg)
    data = load_prepared(paths.prepared(dataset))
    ref = reference_images(data, scfg["reference"], scfg["n_reference"], dataset)
    log.info("Inception features of %d %s images of %s", len(ref), scfg["reference"], dataset)
    feats = extract(ref, weights, batch_size=scfg["batch_size"], device=_device(None), progress=progress)
    save_features(paths.reference_features(dataset), feats)


def _load_reference(dataset: str, scfg: dict) -> dict:
    from pipeline.inception import load_features

    path = paths.reference_features(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the reference stage (python -m pipeline reference --dataset "
                                f"{dataset})")
    feats = load_features(path)
    n = len(next(iter(feats.values())))
    if n != scfg["n_reference"]:
        raise RuntimeError(f"{path} holds features of {n} images, but params.yaml asks for n_reference "
                           f"{scfg['n_reference']}: rerun the reference stage (python -m pipeline reference "
                           f"--dataset {dataset})")
    return feats


def _inception_scores(images: np.ndarray, ref: dict, scfg: dict, weights, progress: bool) -> dict[str, float]:
    from pipeline.inception import extract, scores

    feats = extract(images, weights, batch_size=scfg["batch_size"], device=_device(None), progress=progress)
    s = scores(feats, ref, kid_subsets=scfg["kid_subsets"],
               kid_subset_size=min(scfg["kid_subset_size"], len(images), scfg["n_reference"]),
               isc_splits=scfg["isc_splits"])
    return {"fid": s["fid"], "inception_score": s["inception_score_mean"],
            "inception_score_std": s["inception_score_std"], "kid": s["kid_mean"], "kid_std": s["kid_std"],
            "fid_cleanfid_clean": s["fid_cleanfid_clean"],
            "fid_cleanfid_legacy_tensorflow": s["fid_cleanfid_legacy_tensorflow"]}


def _protocol(scfg: dict, n_samples: int) -> dict:
    import cleanfid
    import torch_fidelity

    return {"reference": scfg["reference"], "n_reference": scfg["n_reference"], "n_samples": n_samples,
            "implementation": f"torch-fidelity {torch_fidelity.__version__} (FID/IS/KID, inception-v3-compat); "
                              f"clean-fid {getattr(cleanfid, '__version__', '?')} (fid_cleanfid_*)",
            "isc_splits": scfg["isc_splits"], "kid_subsets": scfg["kid_subsets"]}


def _score_inception(params: dict, dataset: str, method: str, seed: int, progress: bool) -> None:
    """FID, IS, KID (torch-fidelity) and clean-FID (clean-fid, two modes) of both sample sets."""
    scfg = dataset_cfg(params, dataset)["score"]
    weights = _weights(scfg)
    ref = _load_reference(dataset, scfg)
    with np.load(paths.samples(dataset, method, seed), allow_pickle=False) as z:
        keys = list(z.files)
        final = "revised" if "revised" in keys else "vae"
        # One sample set in memory at a time; extract() streams it through Inception in batches.
        results = {key: _inception_scores(z[key], ref, scfg, weights, progress) for key in keys}
        n = int(z[final].shape[0])
    out = _protocol(scfg, n)
    out.update(results[final])
    if "vae" in results:  # the proposal's own scores; the short-run EBM has none
        out.update({f"{k}_vae": v for k, v in results["vae"].items()})
    write_json(paths.metrics(dataset, method, seed), out)
    log.info("%s seed %d on %s: FID %.2f (proposal only %s), IS %.2f", method, seed, dataset, out["fid"],
             out.get("fid_vae"), out["inception_score"])


def _score_real_inception(params: dict, dataset: str, progress: bool) -> None:
    scfg = dataset_cfg(params, dataset)["score"]
    weights = _weights(scfg)
    ref = _load_reference(dataset, scfg)
    data = load_prepared(paths.prepared(dataset))
    out = _protocol(scfg, int(len(data.x_test)))
    out.update(_inception_scores(data.x_test, ref, scfg, weights, progress))
    write_json(paths.metrics(dataset, "real"), out)
    log.info("real test split on %s: FID %.2f, IS %.2f", dataset, out["fid"], out["inception_score"])


# --------------------------------------------------------------------------------------------------
# The official code's experiments (pipeline.experiments), each a stage of one run (method, seed).

def _experiment_setup(params: dict, dataset: str, method: str, seed: int, device: str | None):
    """(experiments config, method config, data, arch, models, generator) for an experiment stage."""
    from pipeline.teaching import NETS

    if method not in NETS or not {"ebm", "encoder", "decoder"} <= set(NETS[method]):
        raise ValueError(f"the experiments need a VAE and an EBM; method {method!r} has "
                         f"{', '.join(NETS.get(method, ())) or 'no nets trained here'}")
    dcfg, mcfg = dataset_cfg(params, dataset), run_cfg(params, dataset, method, seed)
    if "experiments" not in dcfg:
        raise ValueError(f"params.yaml has no datasets.{dataset}.experiments section (n_images, n_show, cols, "
                         "interpolation, trajectory, seed): add one to run the experiments on it")
    dev = _device(device)
    data = load_prepared(paths.prepared(dataset))
    arch = _arch(data.x_train.shape, dcfg["nets"])
    models = load_checkpoint(paths.checkpoint(dataset, method, seed), dataset, method, arch, dev, seed)
    for m in models.values():
        m.train()  # official: BN on batch statistics at test time too
    gen = torch.Generator(device=dev)
    gen.manual_seed(dcfg["experiments"]["seed"])
    return dcfg["experiments"], mcfg, data, arch, models, gen


def _mse(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Per-pixel mean squared error of two uint8 image sets in the nets' [−1, 1] scale (over ``where``)."""
    from pipeline.sample import to_float

    d = (to_float(a) - to_float(b)).pow(2).permute(0, 2, 3, 1).numpy()
    return float(d[where].mean() if where is not None else d.mean())


def completion(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
               progress: bool = True) -> None:
    """Complete the bottom half of the first ``n_images`` test images; MSE on the hidden half and (digits)
    the classifier's accuracy: masked input, VAE alone, VAE + Langevin; PNG masked | completed | truth.

    The saved completions carry the test image's own uint8 pixels on the visible half (the Langevin
    revision keeps them bit-exact in float; the uint8 map truncates, so they are pasted, not re-mapped).
    """
    from pipeline.experiments import complete
    from pipeline.pictures import save_grid
    from pipeline.sample import to_float, to_uint8

    ecfg, mcfg, data, arch, models, gen = _experiment_setup(params, dataset, method, seed, device)
    truth = data.x_test[: ecfg["n_images"]]
    x = to_float(truth, next(models["ebm"].parameters()).device)
    out = complete(models, x, mcfg["langevin"], mcfg["n_chains"], gen, ecfg["fill"])
    h = truth.shape[1]
    visible = np.zeros(truth.shape, bool)
    visible[:, : h // 2] = True
    imgs = {k: np.where(visible, truth, to_uint8(v)) for k, v in out.items()}
    result = {"n_images": int(len(truth)), "hidden": "bottom half (rows >= H/2)", "fill": ecfg["fill"],
              "langevin_steps": mcfg["langevin"]["test_steps"]}
    for k in ("masked", "vae", "completed"):
        result[f"mse_hidden_{k}"] = _mse(imgs[k], truth, ~visible)
    if dataset in EMBEDDED:
        from pipeline.features import load_classifier, predict

        clf = load_classifier(paths.classifier(dataset))
        labels = data.y_test[: len(truth)]
        for k, v in (*imgs.items(), ("truth", truth)):
            result[f"accuracy_{k}"] = float((predict(clf, v) == labels).mean())
    n = ecfg["n_show"]
    json_path, png = (paths.experiment(dataset, method, seed, "completion", e) for e in ("json", "png"))
    with all_or_none(json_path, png):
        write_json(json_path, result)
        save_grid(png, {"masked input": imgs["masked"], "VAE alone": imgs["vae"],
                        f"completed ({mcfg['langevin']['test_steps']} Langevin steps)": imgs["completed"],
                        "truth": truth}, n=n, cols=ecfg["cols"])
    log.info("completion of %s seed %d on %s: %s", method, seed, dataset, result)


def reconstruction(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
                   progress: bool = True) -> None:
    """Reconstruct the first ``n_images`` test images (encoder mean → decoder → Langevin); per-pixel MSE of
    the VAE alone and after the refinement; PNG truth | VAE | refined."""
    from pipeline.experiments import reconstruct
    from pipeline.pictures import save_grid
    from pipeline.sample import to_float, to_uint8

    ecfg, mcfg, data, arch, models, gen = _experiment_setup(params, dataset, method, seed, device)
    truth = data.x_test[: ecfg["n_images"]]
    out = reconstruct(models, to_float(truth, next(models["ebm"].parameters()).device), mcfg["langevin"],
                      mcfg["n_chains"], gen)
    imgs = {k: to_uint8(v) for k, v in out.items()}
    result = {"n_images": int(len(truth)), "langevin_steps": mcfg["langevin"]["test_steps"],
              "mse_vae": _mse(imgs["vae"], truth), "mse_refined": _mse(imgs["refined"], truth)}
    json_path, png = (paths.experiment(dataset, method, seed, "reconstruction", e) for e in ("json", "png"))
    with all_or_none(json_path, png):
        write_json(json_path, result)
        save_grid(png, {"truth": truth, "VAE alone g(μ(x))": imgs["vae"],
                        f"refined ({mcfg['langevin']['test_steps']} Langevin steps)": imgs["refined"]},
                  n=ecfg["n_show"], cols=ecfg["cols"])
    log.info("reconstruction of %s seed %d on %s: %s", method, seed, dataset, result)


def interpolation(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
                  progress: bool = True) -> None:
    """PNG: linear paths between pairs of codes, one per row, decoded and Langevin-revised."""
    from pipeline.experiments import interpolate
    from pipeline.pictures import save_grid
    from pipeline.sample import to_uint8

    ecfg, mcfg, data, arch, models, gen = _experiment_setup(params, dataset, method, seed, device)
    icfg = ecfg["interpolation"]
    out = interpolate(models, icfg["pairs"], icfg["steps"], arch["z_dim"], mcfg["langevin"], gen)
    save_grid(paths.experiment(dataset, method, seed, "interpolation", "png"),
              {"decoded g(z)": to_uint8(out["decoded"]),
               f"revised ({mcfg['langevin']['test_steps']} Langevin steps)": to_uint8(out["revised"])},
              n=icfg["pairs"] * icfg["steps"], cols=icfg["steps"],
              title="z = (1 − a)·z₀ + a·z₁, a from 0 (left) to 1 (right)")


def trajectory(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
               progress: bool = True) -> None:
    """PNG: Langevin chains from x̃ (left) to x̂ (right), one chain per row, every step."""
    from pipeline.experiments import trajectory as chains
    from pipeline.pictures import save_grid
    from pipeline.sample import to_uint8

    ecfg, mcfg, data, arch, models, gen = _experiment_setup(params, dataset, method, seed, device)
    # the batch the nets saw in training (BatchNorm on batch statistics); the first `chains` are shown
    states = chains(models, mcfg["n_chains"], arch["z_dim"], mcfg["langevin"], gen)
    shown = states[: ecfg["trajectory"]["chains"]]
    steps = shown.shape[1]
    save_grid(paths.experiment(dataset, method, seed, "trajectory", "png"),
              {f"Langevin step 0 (x̃) … {steps - 1} (x̂)": to_uint8(shown.flatten(0, 1))},
              n=shown.shape[0] * steps, cols=steps)
