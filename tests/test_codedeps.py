"""Each stage declares as code exactly the import closure of its module (pipeline/codedeps.py), in both workflows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import codedeps
from pipeline.codedeps import closure, code_inputs, stage_module

ROOT = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_closure_follows_every_kind_of_import(tmp_path):
    """Top-level, function-local, relative and `from pipeline import submodule` imports; packages' __init__."""
    _write(tmp_path, {
        "pipeline/__init__.py": "",
        "pipeline/a.py": "from pipeline import b\nfrom pipeline.sub.c import NAME\n",
        "pipeline/b.py": "def f():\n    import pipeline.d\n",
        "pipeline/d.py": "import os\n",
        "pipeline/sub/__init__.py": "",
        "pipeline/sub/c.py": "from . import e\nNAME = 1\n",
        "pipeline/sub/e.py": "",
        "pipeline/unused.py": "",
    })
    assert closure("pipeline.a", tmp_path) == (
        "pipeline/__init__.py", "pipeline/a.py", "pipeline/b.py", "pipeline/d.py", "pipeline/sub/__init__.py",
        "pipeline/sub/c.py", "pipeline/sub/e.py")
    assert closure("pipeline.d", tmp_path) == ("pipeline/__init__.py", "pipeline/d.py")
    with pytest.raises(ModuleNotFoundError):
        closure("pipeline.missing", tmp_path)


def test_each_stage_runs_only_what_it_needs():
    """The split that makes reruns cheap: scoring code is not training's, and training's data scaling is."""
    train = set(code_inputs("train"))
    assert "pipeline/pixels.py" in train  # to_float scales the training data
    assert "pipeline/sample.py" not in train  # sampling code is not training's
    assert {"pipeline/nets.py", "pipeline/teaching.py", "pipeline/resume.py"} <= train
    assert not {"pipeline/metrics.py", "pipeline/inception.py", "pipeline/features.py", "pipeline/tables.py"} & train
    for stage in ("score", "score-real"):
        digits, paper = set(code_inputs(stage, "digits")), set(code_inputs(stage, "cifar10"))
        assert "pipeline/metrics.py" in digits and "pipeline/inception.py" not in digits
        assert "pipeline/inception.py" in paper and "pipeline/metrics.py" not in paper
        assert not {"pipeline/nets.py", "pipeline/teaching.py"} & (digits | paper)
        assert "pipeline/pixels.py" in paper  # the FID protocols' float -> uint8 conversion of the reference
    # the reference features: the conversion, not the nets or the sampler
    reference = set(code_inputs("reference", "cifar10"))
    assert "pipeline/pixels.py" in reference and not {"pipeline/nets.py", "pipeline/sample.py"} & reference
    prepare = set(code_inputs("prepare", "cifar10"))
    assert {"pipeline/data/cifar10.py", "pipeline/data/archives.py"} <= prepare
    assert not {"pipeline/nets.py", "pipeline/inception.py", "pipeline/data/svhn.py"} & prepare
    assert "pipeline/data/archives.py" not in code_inputs("prepare", "digits")  # embedded: no archive
    assert "pipeline/data/fashion_mnist.py" in code_inputs("prepare", "fashion-mnist")  # the key's '-' read as '_'
    # Fashion-MNIST: digits' classifier scoring plus Inception's (when its weights are present); digits not Inception's
    fashion = set(code_inputs("score-real", "fashion-mnist"))
    assert set(code_inputs("score-real", "digits")) < fashion and "pipeline/inception.py" in fashion
    assert "pipeline/features.py" in code_inputs("completion") and "pipeline/features.py" not in code_inputs("trajectory")
    assert not any(f.startswith("pipeline/stages/") for f in code_inputs("tables") + code_inputs("check"))


def test_embedded_datasets_agree():
    from pipeline.stages.common import EMBEDDED

    assert codedeps.EMBEDDED == EMBEDDED


STAGE_MODULES = sorted({stage_module(s, d) for s in codedeps.STAGES for d in ("digits", "cifar10", "fashion-mnist")})


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_importing_a_stage_loads_no_undeclared_module(module):
    """What Python really loads when the stage's module is imported lies within the computed closure."""
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
            "if (n == 'pipeline' or n.startswith('pipeline.')) and getattr(m, '__file__', None))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(out.stdout)}
    assert loaded <= set(closure(module)), loaded - set(closure(module))


def _cli_stage(cmd: str) -> tuple[str, str | None]:
    words = cmd.split()
    dataset = words[words.index("--dataset") + 1] if "--dataset" in words else None
    return words[3], dataset  # python -m pipeline <stage>


def test_dvc_yaml_code_deps_are_the_closures(in_repo):
    """dvc.yaml lists code by hand (DVC computes nothing): every stage's pipeline/ deps are its closure."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    checked = 0
    with Repo(str(in_repo)) as repo:
        for st in repo.index.stages:
            deps = {str(d.def_path) for d in st.deps if not isinstance(d, ParamsDependency)}
            code = {d for d in deps if d.startswith("pipeline/") and d.endswith(".py")}
            stage, dataset = _cli_stage(st.cmd)
            assert code == set(code_inputs(stage, dataset)), (
                f"{st.addressing}: not in dvc.yaml {sorted(set(code_inputs(stage, dataset)) - code)}, "
                f"not in the closure {sorted(code - set(code_inputs(stage, dataset)))}")
            checked += 1
    assert checked > 100


def test_reference_reads_only_the_keys_that_change_its_features(in_repo):
    """Changing kid_subsets (or any KID/IS setting) does not recompute the reference features."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(in_repo)) as repo:
        ref = next(s for s in repo.index.stages if s.addressing == "reference@cifar10")
        params = {p for d in ref.deps if isinstance(d, ParamsDependency) for p in d.params}
    assert params == {f"datasets.cifar10.score.{k}" for k in ("protocols", "batch_size")}
    # the Snakefile's params of the rule are the same keys (rules/common.smk REFERENCE_KEYS)
    text = (in_repo / "rules/common.smk").read_text()
    assert 'REFERENCE_KEYS = ["protocols", "batch_size"]' in text
