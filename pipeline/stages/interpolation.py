"""Stage interpolation (official inter): linear paths between codes, decoded and revised."""

from __future__ import annotations

from pipeline import paths
from pipeline.stages.experiment import setup


def interpolation(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
                  progress: bool = True) -> None:
    """PNG: linear paths between pairs of codes, one per row, decoded and Langevin-revised."""
    from pipeline.experiments import interpolate
    from pipeline.pictures import save_grid
    from pipeline.pixels import to_uint8

    ecfg, mcfg, data, arch, models, gen = setup(params, dataset, method, seed, device)
    icfg = ecfg["interpolation"]
    out = interpolate(models, icfg["pairs"], icfg["steps"], arch["z_dim"], mcfg["langevin"], gen)
    save_grid(paths.experiment(dataset, method, seed, "interpolation", "png"),
              {"decoded g(z)": to_uint8(out["decoded"]),
               f"revised ({mcfg['langevin']['test_steps']} Langevin steps)": to_uint8(out["revised"])},
              n=icfg["pairs"] * icfg["steps"], cols=icfg["steps"],
              title="z = (1 − a)·z₀ + a·z₁, a from 0 (left) to 1 (right)")
