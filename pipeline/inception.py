"""Inception scores of uint8 image sets (IS, FID, KID, clean-fid FID), streamed, through the libraries' own code.

Three protocols, each reported under its own name:

* torch-fidelity (``inception_score_*``, ``fid``, ``kid_*``): the TF Inception (2015-12-05 graph) weights
  ported to PyTorch, with TF1's bilinear resize to 299×299 re-implemented; it matches the TF code of the
  paper's era (TTUR FID, OpenAI improved-GAN IS) closely. This is the paper-comparable number.
* clean-fid ``legacy_tensorflow`` (``fid_cleanfid_legacy_tensorflow``): the TorchScript translation of the same
  TF graph (NVIDIA's ``inception-2015-12-05.pt``), resizing *inside* the network the way TF did.
* clean-fid ``clean`` (``fid_cleanfid_clean``): the same network, but each image resized outside it with PIL
  bicubic (antialiased) on float data, clean-fid's recommended protocol; not comparable with the two above.

``extract`` makes one pass over the images and keeps only the features (float32), so a 50,000-image set
costs its features plus one batch; ``scores`` then calls the libraries' metric functions on them.
Weight files are found by ``find_weights`` (config dir, env var, library caches) and never fetched silently
unless ``download`` is set.
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from pipeline.atomic import write_bytes, write_torch
from pipeline.data.archives import socket_timeout

ENV_VAR = "PIPELINE_INCEPTION_DIR"
CONFIG_KEY = "score.inception_weights_dir"
# Where torch-fidelity's load_state_dict_from_url puts the file: <torch.hub.get_dir()>/checkpoints.
# clean-fid's feature_extractor() hard-codes its download directory; mirrored here so tests can redirect it.
CLEANFID_CACHE_DIR = Path("./" if platform.system() == "Windows" else "/tmp")
DOWNLOAD_TIMEOUT_S = 15.0

# Feature kinds produced by ``extract``.
FIDELITY_POOL = "fidelity_2048"
FIDELITY_LOGITS = "fidelity_logits_unbiased"
CLEANFID_MODES = ("clean", "legacy_tensorflow")
FEATURE_KEYS = (FIDELITY_POOL, FIDELITY_LOGITS) + tuple(f"cleanfid_{m}" for m in CLEANFID_MODES)

# Sizes could not be confirmed from the library sources, their docs, or the searchable references here.
SIZE_NOT_VERIFIED = "size not verified here"


class WeightsError(RuntimeError):
    """An Inception weight file is missing (and could not be downloaded)."""


@dataclass(frozen=True)
class InceptionWeights:
    """Paths of the two weight files: torch-fidelity's state dict and clean-fid's TorchScript model."""

    fidelity_pth: Path
    cleanfid_pt: Path


# --------------------------------------------------------------------------------------------- discovery


def fidelity_url() -> str:
    """URL of torch-fidelity's InceptionV3 state dict, as in its source."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def cleanfid_url() -> str:
    """URL of clean-fid's TorchScript Inception, as in its source."""
    from cleanfid.downloads_helper import inception_url

    return inception_url


def fidelity_filename() -> str:
    """File name torch hub gives the download: the URL's basename (its '-6726825d' is a sha256 prefix)."""
    return os.path.basename(fidelity_url())


CLEANFID_FILENAME = "inception-2015-12-05.pt"  # hard-coded in cleanfid's InceptionV3W / check_download_inception


def fidelity_cache_dir() -> Path:
    """torch-fidelity's cache: torch hub's checkpoints dir ($TORCH_HOME/hub/checkpoints, ~/.cache/torch/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _search_dirs(weights_dir: str | os.PathLike | None, cache_dir: Path) -> list[tuple[str, Path]]:
    """(label, directory) in search order: config, env var, library cache."""
    dirs = []
    if weights_dir:
        dirs.append((CONFIG_KEY, Path(weights_dir)))
    if os.environ.get(ENV_VAR):
        dirs.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR])))
    dirs.append(("library cache", cache_dir))
    return dirs


def download_dir(weights_dir: str | os.PathLike | None, cache_dir: Path) -> Path:
    """Where a missing file is downloaded: the configured directory, else ``$PIPELINE_INCEPTION_DIR``, else
    the library's own cache (clean-fid's is node-local ``/tmp``, so set one of the two on a cluster)."""
    if weights_dir:
        return Path(weights_dir)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return cache_dir


def _first_existing(name: str, dirs: list[tuple[str, Path]]) -> Path | None:
    for _, d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def _download_fidelity(cache_dir: Path, progress: bool) -> Path:
    # torch-fidelity's own download call; check_hash verifies the sha256 prefix in the file name, and
    # torch hub writes to a temporary file first, so a failed transfer leaves nothing behind.
    torch.hub.load_state_dict_from_url(fidelity_url(), model_dir=str(cache_dir), map_location="cpu",
                                       progress=progress, check_hash=True)
    return cache_dir / fidelity_filename()


def _download_cleanfid(cache_dir: Path) -> Path:
    from cleanfid.downloads_helper import check_download_inception

    # clean-fid writes straight into the target, so a broken transfer would leave a truncated file that
    # later counts as found: download into a scratch dir beside it and rename when complete.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cleanfid-dl-", dir=cache_dir) as tmp:
        got = Path(check_download_inception(fpath=tmp))
        os.replace(got, cache_dir / CLEANFID_FILENAME)
    return cache_dir / CLEANFID_FILENAME


def _missing_entry(name: str, url: str, dirs: list[tuple[str, Path]], failure: str | None) -> str:
    where = "; ".join(f"{label}: {d}" for label, d in dirs)
    lines = [f"  - {name} ({SIZE_NOT_VERIFIED})", f"      from {url}", f"      searched {where}"]
    if failure:
        lines.append(f"      download failed: {failure}")
    return "\n".join(lines)


def _weights_message(entries: list[str], cache_hint: Mapping[str, Path], download: bool) -> str:
    fetch = ("downloading was tried and failed: fetch the file(s) on a machine with network access"
             if download else "or set score.download_weights: true on a machine with network access")
    return (
        "Inception weights missing:\n" + "\n".join(entries) + "\n"
        f"Put the file(s) in the directory named by the config key `{CONFIG_KEY}`, or by the env var {ENV_VAR}, "
        "or in the library's cache ("
        + ", ".join(f"{k}: {v}" for k, v in cache_hint.items())
        + f"); {fetch}."
    )


def find_weights(weights_dir: str | os.PathLike | None, download: bool, *, progress: bool = False) -> InceptionWeights:
    """Locate both Inception weight files; optionally download the missing ones with each library's own code.

    Search order per file: ``weights_dir`` (config ``score.inception_weights_dir``), then ``$PIPELINE_INCEPTION_DIR``,
    then the library's cache (torch hub's ``checkpoints`` dir for torch-fidelity, ``/tmp`` for clean-fid).
    Downloads go to the first of ``weights_dir`` and ``$PIPELINE_INCEPTION_DIR`` that is set (one directory
    for both libraries, e.g. on storage every cluster node sees), else to each library's cache; with a
    short socket timeout, so an unreachable host fails in seconds.
    Raises ``WeightsError`` listing every missing file (name, size note, URL, directories searched).
    """
    specs = [
        ("fidelity", fidelity_filename(), fidelity_url(), fidelity_cache_dir(),
         lambda d: _download_fidelity(d, progress)),
        ("cleanfid", CLEANFID_FILENAME, cleanfid_url(), CLEANFID_CACHE_DIR, _download_cleanfid),
    ]
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, name, url, cache_dir, fetch in specs:
        dirs = _search_dirs(weights_dir, cache_dir)
        path = _first_existing(name, dirs)
        failure = None
        if path is None and download:
            try:
                with socket_timeout(DOWNLOAD_TIMEOUT_S):  # both libraries call urlopen without one
                    path = fetch(download_dir(weights_dir, cache_dir))
            except Exception as e:  # any failure (DNS, proxy, HTTP, hash) means the same thing: not available
                failure = f"{type(e).__name__}: {e}"
                path = None
        if path is None:
            missing.append(_missing_entry(name, url, dirs, failure))
        else:
            found[key] = path
    if missing:
        raise WeightsError(_weights_message(missing, {"torch-fidelity": fidelity_cache_dir(),
                                                      "clean-fid": CLEANFID_CACHE_DIR}, download))
    return InceptionWeights(fidelity_pth=found["fidelity"], cleanfid_pt=found["cleanfid"])


# --------------------------------------------------------------------------------------------- features


def _check_images(images: Any) -> None:
    shape, dtype = getattr(images, "shape", None), getattr(images, "dtype", None)
    if shape is None or len(shape) != 4 or shape[3] != 3 or np.dtype(dtype) != np.uint8:
        raise ValueError(f"images must be uint8 N×H×W×3, got {dtype} {shape}")
    if shape[0] == 0:
        raise ValueError("images is empty")


def _fidelity_extractor(weights: InceptionWeights, device: torch.device) -> torch.nn.Module:
    from torch_fidelity.utils import create_feature_extractor

    net = create_feature_extractor("inception-v3-compat", ["2048", "logits_unbiased"], cuda=False,
                                   feature_extractor_weights_path=str(weights.fidelity_pth), verbose=False)
    return net.to(device)


def _cleanfid_model(weights: InceptionWeights, device: torch.device) -> torch.nn.Module:
    from cleanfid.inception_torchscript import InceptionV3W

    if weights.cleanfid_pt.name != CLEANFID_FILENAME:
        # InceptionV3W takes a directory and appends this fixed name.
        raise ValueError(f"clean-fid weights must be named {CLEANFID_FILENAME}, got {weights.cleanfid_pt}")
    # One TorchScript load serves both modes: resize_inside is a plain attribute read in forward.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return InceptionV3W(str(weights.cleanfid_pt.parent), download=False).to(device).eval()


def _cleanfid_batch(chunk: np.ndarray, fn_resize: Any, to_tensor: Any) -> torch.Tensor:
    """A batch exactly as clean-fid's ResizeDataset + default collate builds it from decoded RGB images."""
    items = []
    for img in chunk:
        resized = fn_resize(img)
        # ToTensor scales only uint8 to [0, 1], hence clean-fid's *255 for the un-resized (uint8) path.
        items.append(to_tensor(np.array(resized)) * 255 if resized.dtype == "uint8" else to_tensor(resized))
    return torch.stack(items)


def _cleanfid_features(net: torch.nn.Module, batch: torch.Tensor, mode: str, device: torch.device) -> np.ndarray:
    from cleanfid.fid import get_batch_features

    net.resize_inside = mode == "legacy_tensorflow"  # as cleanfid.features.build_feature_extractor sets it
    return get_batch_features(batch, net, device)


def _fidelity_features(net: torch.nn.Module, chunk: np.ndarray, device: torch.device) -> tuple[np.ndarray, ...]:
    x = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))).to(device)
    with torch.no_grad():
        out = net.convert_features_tuple_to_dict(net(x))
    return out["2048"].cpu().numpy(), out["logits_unbiased"].cpu().numpy()


def extract(images: np.ndarray, weights: InceptionWeights, *, batch_size: int, device: torch.device,
            progress: bool) -> dict[str, np.ndarray]:
    """All Inception features of uint8 N×H×W×3 images in one streaming pass (one batch in float at a time).

    Returns float32 arrays keyed by ``FEATURE_KEYS``: torch-fidelity's ``inception-v3-compat`` pool features
    (``fidelity_2048``) and bias-free logits for IS (``fidelity_logits_unbiased``), and clean-fid's pool features
    for the ``clean`` and ``legacy_tensorflow`` modes, each computed as the library computes them.
    ``images`` may be a ``np.memmap`` or anything with shape/dtype that slices into arrays.
    """
    from cleanfid.resize import build_resizer
    from torchvision.transforms import ToTensor

    _check_images(images)
    n = int(images.shape[0])
    fid_net = _fidelity_extractor(weights, device)
    clean_net = _cleanfid_model(weights, device)
    resizers = {mode: build_resizer(mode) for mode in CLEANFID_MODES}
    to_tensor = ToTensor()
    dims = {FIDELITY_POOL: 2048, FIDELITY_LOGITS: fid_net.fc.out_features,
            **{f"cleanfid_{m}": 2048 for m in CLEANFID_MODES}}
    out = {k: np.empty((n, d), dtype=np.float32) for k, d in dims.items()}
    with tqdm(total=n, disable=not progress, unit="img", desc="Inception features") as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            chunk = np.asarray(images[start:stop])
            out[FIDELITY_POOL][start:stop], out[FIDELITY_LOGITS][start:stop] = _fidelity_features(
                fid_net, chunk, device)
            for mode in CLEANFID_MODES:
                batch = _cleanfid_batch(chunk, resizers[mode], to_tensor)
                out[f"cleanfid_{mode}"][start:stop] = _cleanfid_features(clean_net, batch, mode, device)
                del batch  # the clean-mode batch is 299×299 floats: free it before the next one
            bar.update(stop - start)
    return out


# --------------------------------------------------------------------------------------------- metrics


def _cleanfid_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    from cleanfid.fid import frechet_distance

    # Statistics exactly as cleanfid.fid.compare_folders computes them.
    mu1, sigma1 = np.mean(f1, axis=0), np.cov(f1, rowvar=False)
    mu2, sigma2 = np.mean(f2, axis=0), np.cov(f2, rowvar=False)
    return float(frechet_distance(mu1, sigma1, mu2, sigma2))


def scores(sample_feats: Mapping[str, np.ndarray], ref_feats: Mapping[str, np.ndarray], *, kid_subsets: int,
           kid_subset_size: int, isc_splits: int = 10, seed: int = 2020) -> dict[str, float]:
    """IS of the samples and FID/KID between samples and reference, from ``extract``'s features.

    * ``inception_score_mean/std``: torch_fidelity.metric_isc on the bias-free logits (shuffled with ``seed``,
      ``isc_splits`` splits), as torch-fidelity's ``calculate_metrics(isc=True)``.
    * ``fid``: torch_fidelity.metric_fid statistics and distance on the 2048-d pool features (TF-compatible).
    * ``kid_mean/std``: torch_fidelity.metric_kid (cubic polynomial kernel, ``kid_subsets`` subsets of
      ``kid_subset_size``, capped at the smaller set size, rng ``seed``).
    * ``fid_cleanfid_clean`` / ``fid_cleanfid_legacy_tensorflow``: cleanfid.fid's mean/cov and ``frechet_distance``.
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    s_pool, r_pool = torch.from_numpy(sample_feats[FIDELITY_POOL]), torch.from_numpy(ref_feats[FIDELITY_POOL])
    isc = isc_features_to_metric(torch.from_numpy(sample_feats[FIDELITY_LOGITS]), splits=isc_splits, shuffle=True,
                                 rng_seed=seed)
    fid = fid_statistics_to_metric(fid_features_to_statistics(s_pool), fid_features_to_statistics(r_pool),
                                   verbose=False)
    kid = kid_features_to_metric(s_pool, r_pool, kid_subsets=kid_subsets,
                                 kid_subset_size=min(kid_subset_size, len(s_pool), len(r_pool)), rng_seed=seed,
                                 verbose=False)
    out = {
        "inception_score_mean": isc[KEY_METRIC_ISC_MEAN], "inception_score_std": isc[KEY_METRIC_ISC_STD],
        "fid": fid[KEY_METRIC_FID], "kid_mean": kid[KEY_METRIC_KID_MEAN], "kid_std": kid[KEY_METRIC_KID_STD],
    }
    for mode in CLEANFID_MODES:
        out[f"fid_cleanfid_{mode}"] = _cleanfid_fid(sample_feats[f"cleanfid_{mode}"], ref_feats[f"cleanfid_{mode}"])
    return {k: float(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------- test weights


def _reinit(module: torch.nn.Module, gen: torch.Generator, logit_std: float) -> None:
    """Variance-preserving random weights, so features and logits are O(1) and the scores non-degenerate."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.normal_(m.bias, std=0.1, generator=gen)
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=logit_std / m.in_features ** 0.5, generator=gen)
            torch.nn.init.normal_(m.bias, std=0.1, generator=gen)


def _random_fidelity_state_dict(gen: torch.Generator) -> dict[str, torch.Tensor]:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Fresh(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
            return None  # keep the fresh layers: their architecture is the point, not any weights

    with tempfile.TemporaryDirectory() as tmp:
        # The constructor always torch.loads a path (or downloads); hand it an empty dict to ignore.
        torch.save({}, Path(tmp) / "empty.pth")
        net = _Fresh("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(Path(tmp) / "empty.pth"))
    _reinit(net, gen, logit_std=10.0)
    _spread_logits(net, gen)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _spread_logits(net: torch.nn.Module, gen: torch.Generator, probes: int = 8, logit_spread: float = 3.0) -> None:
    """Make the random classifier's logits vary between images, so the Inception Score is not ~1.

    A random net's pool features are dominated by a component common to all images; remove it from the
    fc weights (estimated on random probe images) and scale what is left to ``logit_spread`` units.
    """
    scale = torch.rand(probes, 1, 1, 1, generator=gen) * 255
    probe = (torch.rand(probes, 3, 32, 32, generator=gen) * scale).to(torch.uint8)
    with torch.no_grad():
        f = net.eval()(probe)[0].double()
        mu = f.mean(dim=0)
        w = net.fc.weight.double()
        w = w - torch.outer(w @ mu, mu) / (mu @ mu)
        w = w * logit_spread / (w @ (f - mu).T).std()
        net.fc.weight.copy_(w.float())


class _TorchscriptInception(torch.nn.Module):
    """Same interface as NVIDIA's inception-2015-12-05.pt: ``layers`` (→ N×2048×1×1) and forward(img, ...)."""

    def __init__(self, layers: torch.nn.Module, output: torch.nn.Linear) -> None:
        super().__init__()
        self.layers = layers
        self.output = output

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        batch_size, channels, height, width = img.shape
        x = img.to(torch.float32)
        # TF1-style bilinear resize to 299×299 (half-pixel shift, border padding), as the real file does it.
        theta = torch.eye(2, 3, dtype=torch.float32, device=x.device)
        theta[0, 2] += 1.0 / width - 1.0 / 299
        theta[1, 2] += 1.0 / height - 1.0 / 299
        theta = theta.unsqueeze(0).repeat([batch_size, 1, 1])
        grid = torch.nn.functional.affine_grid(theta, [batch_size, channels, 299, 299], False)
        x = torch.nn.functional.grid_sample(x, grid, "bilinear", "border", False)
        features = self.layers((x - 128.0) / 128.0).reshape(-1, 2048)
        if return_features:
            return features
        bias = None if no_output_bias else self.output.bias
        return torch.softmax(torch.nn.functional.linear(features, self.output.weight, bias), dim=1)


def _random_torchscript(gen: torch.Generator) -> bytes:
    from torchvision.models import inception_v3

    tv = inception_v3(weights=None, aux_logits=False, init_weights=True)
    trunk = torch.nn.Sequential(
        tv.Conv2d_1a_3x3, tv.Conv2d_2a_3x3, tv.Conv2d_2b_3x3, tv.maxpool1, tv.Conv2d_3b_1x1, tv.Conv2d_4a_3x3,
        tv.maxpool2, tv.Mixed_5b, tv.Mixed_5c, tv.Mixed_5d, tv.Mixed_6a, tv.Mixed_6b, tv.Mixed_6c, tv.Mixed_6d,
        tv.Mixed_6e, tv.Mixed_7a, tv.Mixed_7b, tv.Mixed_7c, tv.avgpool,
    )
    net = _TorchscriptInception(trunk, torch.nn.Linear(2048, 1008))
    _reinit(net, gen, logit_std=10.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, but it is clean-fid's format
        torch.jit.save(torch.jit.script(net.eval()), buf)
    return buf.getvalue()


def write_random_weights(directory: str | os.PathLike, seed: int = 0) -> InceptionWeights:
    """FOR TESTS AND BENCHMARKS ONLY: randomly initialised weight files in the real formats and file names.

    Writes torch-fidelity's InceptionV3 state dict (its own architecture, random weights) and a TorchScript
    Inception-v3 trunk with clean-fid's expected interface, deterministically from ``seed``. Scores computed
    with them exercise the code paths but mean nothing.
    """
    directory = Path(directory)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # torchvision's own init draws from the global generator
        state = _random_fidelity_state_dict(gen)
        script = _random_torchscript(gen)
    weights = InceptionWeights(fidelity_pth=directory / fidelity_filename(), cleanfid_pt=directory / CLEANFID_FILENAME)
    write_torch(weights.fidelity_pth, state)
    write_bytes(weights.cleanfid_pt, script)
    return weights
