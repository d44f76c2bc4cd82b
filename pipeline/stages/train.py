"""Stage train: one run (dataset, method, seed) -> its checkpoint and training curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

import torch

from pipeline import paths
from pipeline.atomic import all_or_none, write_text, write_with
from pipeline.config import dataset_cfg
from pipeline.data import load_prepared
from pipeline.precision import apply_precision, describe
from pipeline.stages.checkpoints import save_checkpoint
from pipeline.stages.common import METHODS, arch_of, log, maybe_compile, pick_device, run_cfg


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
    from pipeline.pixels import to_float
    from pipeline.teaching import NETS, DivergenceError, make_trainer, trainer_state
    from pipeline.teaching import train as run_training

    if method not in METHODS:
        raise ValueError(f"method {method!r} is not trained here (trained: {', '.join(METHODS)})")
    dcfg, mcfg = dataset_cfg(params, dataset), run_cfg(params, dataset, method, seed)
    # before any net exists: fp32 means TF32 off (PyTorch's default runs cuDNN convolutions in TF32)
    log.info("%s", describe(apply_precision(mcfg.get("precision", "fp32"))))
    dev = pick_device(device)
    data = load_prepared(paths.prepared(dataset))
    # channels-last: oneDNN/cuDNN convolutions run faster on NHWC (measured 1.2-1.8x for the
    # Langevin revision on CPU); the computation is the same.
    x = to_float(data.x_train, dev).contiguous(memory_format=torch.channels_last)
    arch = arch_of(data.x_train.shape, dcfg["nets"])
    torch.manual_seed(mcfg["seed"])
    # All three nets are built (same initialisation order for every method), then the method's kept.
    models = {k: m.to(dev, memory_format=torch.channels_last)
              for k, m in build_models(arch["channels"], arch["size"], dcfg["nets"]).items() if k in NETS[method]}
    maybe_compile(models, mcfg)
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
