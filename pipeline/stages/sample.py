"""Stage sample: a run's proposals and (methods with an EBM) their Langevin revisions."""

from __future__ import annotations

import torch

from pipeline import paths
from pipeline.atomic import all_or_none, write_npz
from pipeline.config import dataset_cfg, method_cfg
from pipeline.data import load_prepared
from pipeline.precision import apply_precision, describe
from pipeline.stages.checkpoints import load_checkpoint
from pipeline.stages.common import REVISED, arch_of, log, maybe_compile, pick_device, run_cfg


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
    switches = apply_precision(mcfg.get("precision", "fp32"))
    dev = pick_device(device)
    log.info("sampling %s seed %d on %s, device %s; %s", method, seed, dataset, dev, describe(switches))
    data = load_prepared(paths.prepared(dataset))
    arch = arch_of(data.x_train.shape, dcfg["nets"])
    models = load_checkpoint(paths.checkpoint(dataset, method, seed), dataset, method, arch, dev, seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(dcfg["sample"]["seed"])
    revise = method in REVISED
    chunk = mcfg["n_chains"] if revise else mcfg["batch_size"]
    langevin = mcfg["langevin"] if revise else None
    noise_init = mcfg.get("noise_init") if method == "ebm" else None
    maybe_compile(models, mcfg)
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
