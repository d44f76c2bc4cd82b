"""The code each stage executes: the import closure of its module within ``pipeline/``.

Snakemake (rules/*.smk) declares ``code_inputs(stage, dataset)`` as each rule's code inputs, and
tests/test_codedeps.py checks that dvc.yaml's code deps are the same closures, so that editing a
module reruns exactly the stages that import it (directly or through another module).

The closure is read from the source with ``ast``, without importing anything (the Snakefile calls it
at parse time): every ``import pipeline.x`` / ``from pipeline.x import y`` anywhere in a module,
function-local imports included (the stages import lazily; a lazy import still runs when the stage
does), with the ``__init__.py`` of every package on the way (Python executes them on import). What
it deliberately leaves out:

- ``pipeline/__main__.py`` and this module: the CLI parses arguments and dispatches to the stage's
  module (``STAGES`` below); it computes nothing a stage writes, and declaring it would rerun every
  stage when a sub-command is added.
- non-Python files a stage reads (``pipeline/paper_numbers.yaml``): rules declare them by hand.
- the dataset module ``prepare`` imports by name (``importlib``): ``code_inputs`` adds it for the
  dataset, with its own closure.

Stdlib only: the Snakefile imports it before anything else.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pipeline"
# Scored on its own classifier's features (fd_<dataset>); every other dataset with Inception.
EMBEDDED = ("digits", "fashion-mnist")
# Embedded datasets whose score stages add Inception's scores when its weights are present (28x28 images
# Inception can read; digits' 8x8 it cannot): their own module, so digits' scores do not depend on Inception code.
EMBEDDED_WITH_INCEPTION = ("fashion-mnist",)

# The module that runs each CLI stage; a triple is (embedded dataset, paper dataset, embedded dataset with
# Inception) where the stage's code depends on how the dataset is scored.
STAGES: dict[str, str | tuple[str, ...]] = {
    "prepare": "pipeline.stages.prepare",
    "reference": "pipeline.stages.reference",
    "weights": "pipeline.stages.weights",
    "classifier": "pipeline.stages.classifier",
    "train": "pipeline.stages.train",
    "import-official": "pipeline.official",
    "sample": "pipeline.stages.sample",
    "score": ("pipeline.stages.score_classifier", "pipeline.stages.score_inception",
              "pipeline.stages.score_classifier_inception"),
    "score-real": ("pipeline.stages.score_classifier", "pipeline.stages.score_inception",
                   "pipeline.stages.score_classifier_inception"),
    "completion": "pipeline.stages.completion",
    "reconstruction": "pipeline.stages.reconstruction",
    "interpolation": "pipeline.stages.interpolation",
    "trajectory": "pipeline.stages.trajectory",
    "tables": "pipeline.tables",
    "paper-tables": "pipeline.tables",
    "check": "pipeline.check",
}


def stage_module(stage: str, dataset: str | None = None) -> str:
    """The dotted name of the module that runs ``stage`` (on ``dataset`` where that matters)."""
    entry = STAGES[stage]
    if isinstance(entry, tuple):
        if dataset is None:
            raise ValueError(f"stage {stage!r} runs other code per dataset kind: give the dataset")
        if dataset in EMBEDDED_WITH_INCEPTION:
            return entry[2]
        return entry[0] if dataset in EMBEDDED else entry[1]
    return entry


def _file(module: str, root: Path) -> Path | None:
    """The source file of a dotted module name under ``root``, or None when it is not a module there."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, module: str) -> set[str]:
    """Every ``pipeline.*`` module name a source file imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            # `from pipeline import paths` imports the submodule pipeline.paths
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


@lru_cache(maxsize=None)
def closure(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """The files (relative to ``root``, sorted) that importing ``module`` can execute within ``pipeline/``.

    Includes the module itself and the ``__init__.py`` of every enclosing package.
    """
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _file(name, root)
        if path is None:
            if name == module:
                raise ModuleNotFoundError(f"{module} has no source file under {root}")
            continue  # `from pipeline.x import y` where y is a name, not a module
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # enclosing packages
        todo.extend(_imported(path, name))
    return tuple(sorted(p.relative_to(root).as_posix() for p in seen.values()))


def code_inputs(stage: str, dataset: str | None = None, root: Path = ROOT) -> list[str]:
    """The code files a workflow declares for ``stage`` on ``dataset``: its module's closure, for
    ``prepare`` with the closure of the dataset's own module (``pipeline/data/<dataset>.py``, '-' read as '_')."""
    files = set(closure(stage_module(stage, dataset), root))
    if stage == "prepare":
        if dataset is None:
            raise ValueError("prepare imports the dataset's module: give the dataset")
        # a dataset key may hold '-' (fashion-mnist), a module name not: pipeline/stages/prepare.py maps it alike
        files |= set(closure(f"{PACKAGE}.data.{dataset.replace('-', '_')}", root))
    return sorted(files)
