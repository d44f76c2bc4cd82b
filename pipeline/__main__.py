"""Command line: ``python -m pipeline <stage> [options]``, one sub-command per pipeline stage.

Snakemake (Snakefile) and DVC (dvc.yaml) call exactly these command lines.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.config import DEFAULT_PARAMS, load_params

DESCRIPTION = """\
Reproduction of 'Learning Energy-Based Model with Variational Auto-Encoder as Amortized Sampler'
(Xie, Zheng & Li, AAAI 2021): variational MCMC teaching (CoopVAEBM).

Stages, in order (each reads params.yaml and writes its outputs atomically):
  prepare     data/prepared/D.npz + D.json        decode the dataset (archives checked by MD5), fixed split
  reference   data/reference/D.npz                Inception features of the real reference images
                                                  (paper datasets: cifar10, svhn, celeba)
  weights     data/reference/D-weights.json       the Inception weight files are there (paper datasets; every
                                                  train job of D waits for it; PIPELINE_INCEPTION_DIR)
  classifier  models/D/classifier.pt              domain feature extractor for fd_D / kid_D (digits)
  train       models/D/M/seedK.pt + results/D/M/seedK/train/
                                                  train method M with training seed K
  import-official models/cifar10/official/seed0.pt the authors' TF checkpoint model.ckpt-3000 in our format
  sample      results/D/M/seedK/samples.npz, .png proposals (+ Langevin revisions for the methods with an EBM)
  score       results/D/M/seedK/metrics.json      FID/IS/KID (paper datasets) or fd_D/KID (digits)
  score-real  results/D/real/metrics.json         the floor: held-out real images, scored alike
  completion  results/D/M/seedK/completion.json, .png      bottom half hidden, completed (official inpaint)
  reconstruction results/D/M/seedK/reconstruction.json, .png  encoder → decoder → Langevin (official recon)
  interpolation  results/D/M/seedK/interpolation.png      paths between codes (official inter)
  trajectory  results/D/M/seedK/trajectory.png    one Langevin chain step by step (official visual)
  tables      results/tables/D.md, D.tex          every method: mean ± std over seeds, each seed; experiments
                                                  (--scope ci: D-ci.md, the runs params.yaml ci.D names)
  paper-tables results/tables/paper.md, .tex      the paper's tables: paper's number, ours, difference
  check       results/D/check.json                exit 1 when a metric (mean over seeds) crosses its threshold
                                                  (--scope ci: check-ci.json)

Methods M: coopvaebm (the paper), coopvaebm-noise (its Langevin with the noise term), vae (the VAE
alone), ebm (short-run EBM from uniform noise), coopnets (generator + EBM, no encoder), official
(the authors' CIFAR-10 checkpoint, imported).

Not stages: `python -m pipeline bench [--help]` times training, sampling and Inception features;
`python -m pipeline parity [--help]` checks our training step against the official TF code's
recorded values (exit 1 when a quantity is out of tolerance).

Usually run through `snakemake --cores all digits` (embedded, offline: CI's runs), `snakemake --cores
all digits_all` (every digits method x seed), `snakemake --cores all` (the full reproduction) or
`dvc repro`, not by hand.
"""


METHOD_CHOICES = ["coopvaebm", "coopvaebm-noise", "vae", "ebm", "coopnets", "official"]
EXPERIMENTS = ("completion", "reconstruction", "interpolation", "trajectory")


def _common(p: argparse.ArgumentParser, dataset: bool = True, method: bool = False, scope: bool = False) -> None:
    if dataset:
        p.add_argument("--dataset", required=True, help="dataset key in params.yaml (e.g. digits)")
    if method:
        p.add_argument("--method", required=True, choices=METHOD_CHOICES,
                       help="coopvaebm: variational MCMC teaching; coopvaebm-noise: the same with the Langevin noise "
                       "term; vae: the VAE trained alone on data; ebm: short-run EBM from noise; coopnets: CoopNets "
                       "(no encoder); official: the authors' released CIFAR-10 checkpoint (import-official)")
        p.add_argument("--seed", type=int, default=0,
                       help="training seed of the run, one of the method's seeds in params.yaml (default: 0)")
    if scope:
        p.add_argument("--scope", choices=["all", "ci"], default="all",
                       help="all: every method x seed in params.yaml; ci: the runs params.yaml ci.<dataset> names "
                       "(make reproduce), written to <name>-ci.* (default: %(default)s)")
    p.add_argument("--params", default=str(DEFAULT_PARAMS), help="hyperparameter file (default: %(default)s)")
    p.add_argument("--log", help="also write this stage's log to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (also when stderr is not a TTY "
                   "and PIPELINE_PROGRESS=0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True, metavar="stage")
    _common(sub.add_parser("prepare", help="decode a dataset to data/prepared/D.npz"))
    _common(sub.add_parser("reference", help="Inception features of the real reference images (paper datasets)"))
    _common(sub.add_parser("weights", help="check that the Inception weights are there (paper datasets; before "
                           "any training)"))
    _common(sub.add_parser("classifier", help="train the domain feature classifier used by score"))
    for name, helptext in (("train", "train a method"), ("sample", "draw samples from a trained method")):
        p = sub.add_parser(name, help=helptext)
        _common(p, method=True)
        p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p = sub.add_parser("import-official", help="the authors' CIFAR-10 TF checkpoint → models/cifar10/official/seed0.pt")
    _common(p, dataset=False)
    p.add_argument("--checkpoint", help="TF checkpoint prefix, e.g. DIR/model.ckpt-3000 (default: params.yaml "
                   "datasets.cifar10.methods.official.checkpoint)")
    _common(sub.add_parser("score", help="score a method's samples"), method=True)
    _common(sub.add_parser("score-real", help="score the held-out real images (the floor)"))
    for name, helptext in (("completion", "complete test images' hidden bottom half (official inpaint)"),
                           ("reconstruction", "encoder → decoder → Langevin refinement of test images (official recon)"),
                           ("interpolation", "linear paths between codes, decoded and revised (official inter)"),
                           ("trajectory", "one PNG strip of Langevin chains step by step (official visual)")):
        p = sub.add_parser(name, help=helptext)
        _common(p, method=True)
        p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    _common(sub.add_parser("tables", help="write results/tables/D.md and D.tex"), scope=True)
    _common(sub.add_parser("paper-tables", help="write results/tables/paper.md and .tex (paper vs ours)"),
            dataset=False)
    _common(sub.add_parser("check", help="compare metrics (mean over seeds) with params.yaml thresholds; exit 1 if "
                           "crossed"), scope=True)
    sub.add_parser("bench", help="speed benchmark (not a stage; see python -m pipeline bench --help)",
                   add_help=False)
    sub.add_parser("parity", help="our training step against the official code's recorded values (not a stage; "
                   "python -m pipeline parity --help)", add_help=False)
    return parser


def _setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers,
                        force=True)


def _set_threads() -> None:
    """Use OMP_NUM_THREADS (Snakemake sets it to the job's threads), else every logical core.

    Results are bit-identical only at the same thread count, so both workflow tools must agree;
    torch's own default (physical cores) would differ from Snakemake's --cores on SMT machines.
    """
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)))


# The stages that run the nets on large batches (training, Langevin sampling and the experiments):
# their activations are kept-and-reused memory instead of fresh page-faulted maps (pipeline/cpualloc.py).
LANGEVIN_STAGES = ("train", "sample", *EXPERIMENTS)


def _keep_freed_memory() -> None:
    """glibc keeps freed heap for reuse (pipeline/cpualloc.py): same results, no page faults per tensor."""
    from pipeline.cpualloc import reuse_freed_memory

    reuse_freed_memory()


_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def explain(exc: BaseException) -> str:
    """The error paragraph for a failed stage: for a failed write, what to do about it."""
    text = str(exc)
    if not isinstance(exc, OSError) or exc.errno not in _NO_SPACE | _NOT_WRITABLE or not exc.filename:
        return text
    where = Path(exc.filename)
    kept = ("Every output is written to a temporary file and renamed, so none was left half-written; "
            "an interrupted train stage resumes from state/ when rerun.")
    if exc.errno in _NO_SPACE:
        return (f"could not write {where}: {exc.strerror} (the disk, a quota or the file-size limit ran out). "
                f"{kept} Free space on that filesystem (`df -h {where.parent}`) or run from a larger disk, "
                f"then rerun the stage.")
    return (f"could not write {where}: {exc.strerror}. {kept} Make {where.parent} a writable directory "
            f"(check its permissions, that it is not on a read-only mount, and that no file of that name "
            f"stands where a directory is needed), then rerun the stage.")


def run_stage(args: argparse.Namespace, params: dict, log: logging.Logger) -> None:
    """Run the stage the arguments name, from the one module ``pipeline.codedeps.STAGES`` gives it.

    Only that module (and what it imports) is loaded, so a stage executes exactly the code the
    workflows declare as its inputs.
    """
    import importlib

    from pipeline.codedeps import stage_module

    module = importlib.import_module(stage_module(args.stage, getattr(args, "dataset", None)))
    stage = args.stage
    if stage in ("prepare", "reference", "weights", "classifier"):
        getattr(module, stage)(params, args.dataset, progress=args.progress)
    elif stage in ("train", "sample", *EXPERIMENTS):
        getattr(module, stage)(params, args.dataset, args.method, args.seed, args.device, args.progress)
    elif stage == "import-official":
        module.import_official(params, args.checkpoint)
    elif stage == "score":
        module.score(params, args.dataset, args.method, args.seed, args.progress)
    elif stage == "score-real":
        module.score_real(params, args.dataset, args.progress)
    elif stage == "tables":
        module.tables(params, args.dataset, args.scope)
    elif stage == "paper-tables":
        module.write_paper_tables(params)
    elif stage == "check":
        for r in module.check(params, args.dataset, args.scope):
            log.info("ok  %s", r["rule"])
    else:  # a sub-command added to the parser but not here
        raise ValueError(f"no dispatch for stage {stage!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["bench"], ["parity"]):  # not stages: their own parsers (python -m pipeline bench --help)
        import importlib

        tool = importlib.import_module(f"pipeline.{argv[0]}")
        _set_threads()
        _keep_freed_memory()
        try:
            return tool.main(argv[1:])
        except Exception as exc:  # the same one-paragraph error as the stages
            if os.environ.get("PIPELINE_TRACEBACK"):
                raise
            print(f"{argv[0]} failed ({type(exc).__name__}): {exc}\n(set PIPELINE_TRACEBACK=1 for the traceback)",
                  file=sys.stderr)
            return 1
    args = build_parser().parse_args(argv)
    _setup_logging(args.log)
    log = logging.getLogger("pipeline")
    progress = args.progress = not args.no_progress and os.environ.get("PIPELINE_PROGRESS", "1") != "0"
    if not progress:  # the one switch the dataset readers (pipeline.data) consult
        os.environ["PIPELINE_PROGRESS"] = "0"
    _set_threads()
    if args.stage in LANGEVIN_STAGES:
        _keep_freed_memory()
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        run_stage(args, params, log)
    except Exception as exc:  # one clear paragraph, not a traceback, for every expected failure
        if os.environ.get("PIPELINE_TRACEBACK"):
            raise
        log.error("%s failed (%s): %s\n(set PIPELINE_TRACEBACK=1 for the traceback)", args.stage,
                  type(exc).__name__, explain(exc))
        return 1
    log.info("%s done in %.1f s", args.stage, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
