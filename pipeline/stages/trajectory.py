"""Stage trajectory (official visual): Langevin chains step by step."""

from __future__ import annotations

from pipeline import paths
from pipeline.stages.experiment import setup


def trajectory(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
               progress: bool = True) -> None:
    """PNG: Langevin chains from x̃ (left) to x̂ (right), one chain per row, every step."""
    from pipeline.experiments import trajectory as chains
    from pipeline.pictures import save_grid
    from pipeline.pixels import to_uint8

    ecfg, mcfg, data, arch, models, gen = setup(params, dataset, method, seed, device)
    # the batch the nets saw in training (BatchNorm on batch statistics); the first `chains` are shown
    states = chains(models, mcfg["n_chains"], arch["z_dim"], mcfg["langevin"], gen)
    shown = states[: ecfg["trajectory"]["chains"]]
    steps = shown.shape[1]
    save_grid(paths.experiment(dataset, method, seed, "trajectory", "png"),
              {f"Langevin step 0 (x̃) … {steps - 1} (x̂)": to_uint8(shown.flatten(0, 1))},
              n=shown.shape[0] * steps, cols=steps)
