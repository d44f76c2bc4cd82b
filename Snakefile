# Thin workflow: every rule calls `python -m pipeline <stage>`; dvc.yaml runs the same command lines
# (tests/test_workflows.py keeps the two in agreement). Hyperparameters: params.yaml only. The rules
# live in rules/*.smk by concern (rules/common.smk: the lists and helpers they share); this file
# validates params.yaml and names the targets.
from snakemake.utils import validate

configfile: "params.yaml"
# `snakemake --report results/report.html`: this description, then every output marked report().
report: "report/workflow.rst"
validate(config, "pipeline/schema.yaml")


include: "rules/common.smk"

# report/workflow.rst shows results/tables/*.md as tables (`.. markdown-tables::`, a docutils
# directive: docutils reads no markdown). Presentation only: no stage imports it. (rules/common.smk
# put this checkout first on sys.path.)
from pipeline.reportmd import register as register_markdown_tables

register_markdown_tables()


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="coopvaebm-noise|coopvaebm|vae|ebm|coopnets|official",
    seed=r"\d+",


rule all:
    default_target: True
    input:
        [t for d in DATASETS for t in targets(d)],
        [t for d in config.get("ci", {}) for t in targets(d, "ci")],
        ["results/tables/paper.md", "results/tables/paper.tex"] if PAPER else [],


# CI's reproduction (`make reproduce`): the runs params.yaml ci.digits names (coopvaebm and vae, seed
# 0) with the experiments; tables and check with --scope ci.
rule digits:
    input:
        targets("digits", "ci"),


# The authors' CIFAR-10 checkpoint imported, sampled and scored (docs/paper-reproduction.md,
# "Evaluate the authors' checkpoint"); `all` includes it only when its files are there (rules/common.smk official_available).
rule official:
    input:
        "results/cifar10/official/seed0/metrics.json",


# Every method x seed of digits (params.yaml), the experiments of every coopvaebm seed.
rule digits_all:
    input:
        targets("digits"),


# Fashion-MNIST (docs/fashion-mnist.md; needs `apt-get install dataset-fashion-mnist` or the idx files in
# data/raw/fashion-mnist/): the whole chain (data, coopvaebm and vae x 3 seeds, tables, check); not in `make reproduce`.
rule fashion:
    input:
        targets("fashion-mnist"),


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/sample.smk"
include: "rules/score.smk"
include: "rules/experiments.smk"
include: "rules/tables.smk"
