"""Stage reconstruction (official recon): encoder mean -> decoder -> Langevin refinement of test images."""

from __future__ import annotations

from pipeline import paths
from pipeline.atomic import all_or_none, write_json
from pipeline.stages.common import log
from pipeline.stages.experiment import mse, setup


def reconstruction(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
                   progress: bool = True) -> None:
    """Reconstruct the first ``n_images`` test images (encoder mean → decoder → Langevin); per-pixel MSE of
    the VAE alone and after the refinement; PNG truth | VAE | refined."""
    from pipeline.experiments import reconstruct
    from pipeline.pictures import save_grid
    from pipeline.pixels import to_float, to_uint8

    ecfg, mcfg, data, arch, models, gen = setup(params, dataset, method, seed, device)
    truth = data.x_test[: ecfg["n_images"]]
    out = reconstruct(models, to_float(truth, next(models["ebm"].parameters()).device), mcfg["langevin"],
                      mcfg["n_chains"], gen)
    imgs = {k: to_uint8(v) for k, v in out.items()}
    result = {"n_images": int(len(truth)), "langevin_steps": mcfg["langevin"]["test_steps"],
              "mse_vae": mse(imgs["vae"], truth), "mse_refined": mse(imgs["refined"], truth)}
    json_path, png = (paths.experiment(dataset, method, seed, "reconstruction", e) for e in ("json", "png"))
    with all_or_none(json_path, png):
        write_json(json_path, result)
        save_grid(png, {"truth": truth, "VAE alone g(μ(x))": imgs["vae"],
                        f"refined ({mcfg['langevin']['test_steps']} Langevin steps)": imgs["refined"]},
                  n=ecfg["n_show"], cols=ecfg["cols"])
    log.info("reconstruction of %s seed %d on %s: %s", method, seed, dataset, result)
