"""Import the authors' released CIFAR-10 checkpoint (TF1 ``model.ckpt-3000``) into our checkpoint format.

The official README (github.com/jianwen-xie/CoopVAEBM) links ``checkpoints.zip``, which holds
``checkpoints/cifar/model.ckpt-3000`` (.index, .data-00000-of-00001, .meta). Its trainable tensors are
mapped into our three nets by the one name/layout table in ``pipeline.tflayout``; the rest is listed
and ignored: our sampler needs only the weights.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline import paths
from pipeline.config import dataset_cfg
from pipeline.tfcheckpoint import read_checkpoint

log = logging.getLogger(__name__)

DATASET = "cifar10"
METHOD = "official"
# the official "cifar" graph: 32x32 RGB images (the checkpoint has no prepared data to read them from)
CHANNELS, SIZE = 3, 32
# Not weights of the sampler: Adam slots and accumulators (beta1_power, beta2_power and their `_1`
# copies for the second optimiser), batch-norm moving statistics (the official generator uses batch
# statistics, is_training=True, even at test time) and the global step `Variable`.
IGNORED = re.compile(r"(^|/)(Adam|Adam_1)$|^beta[12]_power(_\d+)?$|/moving_(mean|variance)$|^Variable$")

MISSING = (
    "The authors' CIFAR-10 checkpoint {prefix} (files model.ckpt-3000.index and "
    "model.ckpt-3000.data-00000-of-00001) was not found. It is not downloaded automatically: the official "
    "GitHub README of jianwen-xie/CoopVAEBM links checkpoints.zip; unzip it and copy the files "
    "checkpoints/cifar/model.ckpt-3000.* from it to {dir}/ (or point --checkpoint / params.yaml "
    "datasets.cifar10.methods.official.checkpoint at them)."
)


def ignored(name: str) -> bool:
    """True for a checkpoint variable that is not a sampler weight (optimiser state, BN statistics, step)."""
    return bool(IGNORED.search(name))


def import_official(params: dict, checkpoint: str | Path | None = None, out: Path | None = None) -> list[str]:
    """Write ``models/cifar10/official/seed0.pt`` from the TF checkpoint prefix; return the ignored variable names.

    Refuses (ValueError, naming them) variables that are neither mapped nor known to be ignorable,
    and shapes that do not match our nets; a missing file raises FileNotFoundError with where to get it.
    """
    from pipeline.nets import build_models
    from pipeline.stages.checkpoints import save_checkpoint
    from pipeline.tflayout import BY_TF, to_modules

    dcfg = dataset_cfg(params, DATASET)
    prefix = Path(checkpoint if checkpoint is not None else dcfg["methods"][METHOD]["checkpoint"])
    for suffix in (".index", ".data-00000-of-00001"):
        if not prefix.with_name(prefix.name + suffix).exists():
            raise FileNotFoundError(MISSING.format(prefix=prefix, dir=prefix.parent))
    tensors = read_checkpoint(prefix)
    skipped = sorted(n for n in tensors if ignored(n))
    unknown = sorted(n for n in tensors if not ignored(n) and n not in BY_TF)
    if unknown:
        raise ValueError(f"{prefix}: variables that are neither weights of the official CIFAR-10 graph nor "
                         f"optimiser/batch-norm state: {', '.join(unknown)}. Is this the cifar checkpoint?")
    arch = {"channels": CHANNELS, "size": SIZE, **dcfg["nets"]}
    models = build_models(CHANNELS, SIZE, dcfg["nets"])
    weights = {n: v for n, v in tensors.items() if n in BY_TF}
    to_modules(weights, models)  # ValueError naming a missing weight or a wrong shape
    step = int(tensors["Variable"]) if "Variable" in tensors else 0
    for name in skipped:
        log.info("ignored %s %s", name, tuple(tensors[name].shape))
    log.info("mapped %d trainable tensors; ignored %d (Adam slots/accumulators, batch-norm moving statistics, "
             "global step)", len(weights), len(skipped))
    save_checkpoint(out or paths.checkpoint(DATASET, METHOD, 0), DATASET, METHOD, arch, models, step)
    return skipped
