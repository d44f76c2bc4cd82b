"""Stage completion (official inpaint): complete the hidden bottom half of test images."""

from __future__ import annotations

import numpy as np

from pipeline import paths
from pipeline.atomic import all_or_none, write_json
from pipeline.stages.common import EMBEDDED, log
from pipeline.stages.experiment import mse, setup


def completion(params: dict, dataset: str, method: str, seed: int = 0, device: str | None = None,
               progress: bool = True) -> None:
    """Complete the bottom half of the first ``n_images`` test images; MSE on the hidden half and (digits)
    the classifier's accuracy: masked input, VAE alone, VAE + Langevin; PNG masked | completed | truth.

    The saved completions carry the test image's own uint8 pixels on the visible half (the Langevin
    revision keeps them bit-exact in float; the uint8 map truncates, so they are pasted, not re-mapped).
    """
    from pipeline.experiments import complete
    from pipeline.pictures import save_grid
    from pipeline.pixels import to_float, to_uint8

    ecfg, mcfg, data, arch, models, gen = setup(params, dataset, method, seed, device)
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
        result[f"mse_hidden_{k}"] = mse(imgs[k], truth, ~visible)
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
