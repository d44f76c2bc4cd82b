"""Scores through the real libraries: torch-fidelity (FD, KID) and clean-fid (FD), never a hand-written formula.

On datasets where Inception does not fit (digits), the features come from the dataset's own
classifier (``pipeline.features``), plugged in through each library's custom feature-extractor hook;
the metric is then named fd_<dataset>/kid_<dataset>, not FID.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from PIL import Image
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from pipeline.features import load_classifier

EXTRACTOR = "digits-classifier"
FEATURE = "features"


class ClassifierFeatures(FeatureExtractorBase):
    """torch-fidelity feature extractor: the penultimate layer of the dataset classifier.

    torch-fidelity passes the checkpoint path as ``feature_extractor_weights_path``.
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"the {EXTRACTOR} feature extractor needs feature_extractor_weights_path")
        self.net = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str]:
        return (FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return FEATURE

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (_features(self.net, x),)


def _features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Classifier features of a batch as either library hands it over (uint8 or float, 0..255)."""
    x = x.float()
    # clean-fid always decodes images as RGB; a grey classifier sees their mean (exact for grey PNGs).
    if x.shape[1] == 3 and net.channels == 1:
        x = x.mean(dim=1, keepdim=True)
    return net.features(x)


if EXTRACTOR not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(EXTRACTOR, ClassifierFeatures)


class Uint8Images(torch.utils.data.Dataset):
    """uint8 N×H×W×C array → uint8 C×H×W tensors, the input torch-fidelity expects."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))


def _check_images(name: str, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{name} must be uint8 images N×H×W×C with C in (1, 3), got {got}")


def fidelity_scores(samples: np.ndarray, reference: np.ndarray, classifier_path: str, *, kid_subsets: int,
                    kid_subset_size: int, batch_size: int = 256, verbose: bool = False) -> dict[str, float]:
    """Fréchet distance and KID (mean, std) between two uint8 image sets, by torch-fidelity."""
    _check_images("samples", samples)
    _check_images("reference", reference)
    m = torch_fidelity.calculate_metrics(
        input1=Uint8Images(samples), input2=Uint8Images(reference), cuda=torch.cuda.is_available(),
        fid=True, kid=True, feature_extractor=EXTRACTOR, feature_extractor_weights_path=str(classifier_path),
        kid_subsets=kid_subsets, kid_subset_size=min(kid_subset_size, len(samples), len(reference)),
        batch_size=batch_size, verbose=verbose, cache=False, save_cpu_ram=True, rng_seed=2020,
    )
    return {"fd": float(m["frechet_inception_distance"]), "kid": float(m["kernel_inception_distance_mean"]),
            "kid_std": float(m["kernel_inception_distance_std"])}


def _write_pngs(images: np.ndarray, folder: Path) -> None:
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(folder / f"{i:06d}.png")


def cleanfid_fd(samples: np.ndarray, reference: np.ndarray, classifier_path: str, *, batch_size: int = 256) -> float:
    """Fréchet distance by clean-fid (folder mode) with the classifier as ``custom_feat_extractor``.

    Images are written losslessly as PNG; ``custom_fn_resize`` keeps them at their native size
    (clean-fid would otherwise resize to Inception's 299×299).
    """
    from cleanfid import fid

    _check_images("samples", samples)
    _check_images("reference", reference)
    net = load_classifier(classifier_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net.to(device)

    with tempfile.TemporaryDirectory(prefix="cleanfid-") as tmp:
        _write_pngs(samples, Path(tmp) / "samples")
        _write_pngs(reference, Path(tmp) / "reference")
        return float(fid.compute_fid(
            str(Path(tmp) / "samples"), str(Path(tmp) / "reference"), mode="clean",
            custom_feat_extractor=lambda batch: _features(net, batch),
            custom_fn_resize=lambda x: x.astype(np.float32), batch_size=batch_size, num_workers=0, device=device,
            verbose=False,
        ))
