# Thin workflow: every rule calls `python -m pipeline <stage>`; dvc.yaml runs the same command lines
# (tests/test_workflows.py keeps the two in agreement). Hyperparameters: params.yaml only.
import json

from snakemake.utils import validate

configfile: "params.yaml"
validate(config, "pipeline/schema.yaml")

# Torch stages declare every core (`threads: workflow.cores`): Snakemake then runs them one at a
# time with OMP_NUM_THREADS = --cores, the thread count `dvc repro` uses too, so both tools give
# bit-identical results on one machine (float reductions depend on the thread count).

# Used with --use-conda; without it the rules run in the current environment (make install).
ENV = "envs/pipeline.yaml"

DATASETS = list(config["datasets"])
# digits is scored on its own classifier's features (fd_digits); the paper's datasets with Inception.
EMBEDDED = [d for d in DATASETS if d == "digits"]
PAPER = [d for d in DATASETS if d not in EMBEDDED]


def methods(dataset):
    """The methods trained here (per-dataset tables and checks); not the imported authors' checkpoint."""
    return [m for m in config["datasets"][dataset]["methods"] if m != "official"]


def evaluated(dataset):
    """Every method sampled and scored, the authors' checkpoint (`official`, cifar10) included."""
    return list(config["datasets"][dataset]["methods"])


def section(*keys):
    """The params.yaml subtree a rule depends on, so that changing it (and only it) reruns the rule."""
    def get(wildcards):
        node = config
        for key in keys:
            node = node[getattr(wildcards, key.strip("{}")) if key.startswith("{") else key]
        return json.dumps(node, sort_keys=True)
    return get


def targets(dataset):
    return [f"results/tables/{dataset}.md", f"results/tables/{dataset}.tex", f"results/{dataset}/check.json"]


def features(wildcards):
    """What score reads besides the samples: the digits classifier, or the real images' Inception features."""
    if wildcards.dataset in EMBEDDED:
        return [f"models/{wildcards.dataset}/classifier.pt", "pipeline/metrics.py"]
    return [f"data/reference/{wildcards.dataset}.npz", "pipeline/inception.py"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="coopvaebm|vae|official",


rule all:
    default_target: True
    input:
        [t for d in DATASETS for t in targets(d)],
        ["results/tables/paper.md", "results/tables/paper.tex"] if PAPER else [],


rule digits:
    input:
        targets("digits"),


# Data and the real images' features first (priority): a missing archive or Inception weight file
# then stops the workflow with its download message before any training starts.
rule prepare:
    input:
        "pipeline/stages.py",
        "pipeline/data/__init__.py",
        "pipeline/data/archives.py",
        "pipeline/data/{dataset}.py",
    output:
        "data/prepared/{dataset}.npz",
        "data/prepared/{dataset}.json",
    params:
        prepare=section("datasets", "{dataset}", "prepare"),
    log:
        "logs/{dataset}/prepare.log",
    priority: 100
    conda:
        ENV
    shell:
        "python -m pipeline prepare --dataset {wildcards.dataset} --log {log}"


rule reference:
    input:
        "data/prepared/{dataset}.npz",
        "pipeline/stages.py",
        "pipeline/inception.py",
    output:
        "data/reference/{dataset}.npz",
    params:
        score=section("datasets", "{dataset}", "score"),
    log:
        "logs/{dataset}/reference.log",
    wildcard_constraints:
        dataset="|".join(PAPER) or "^$",
    priority: 90
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline reference --dataset {wildcards.dataset} --log {log}"


rule classifier:
    wildcard_constraints:
        dataset="|".join(EMBEDDED) or "^$",
    input:
        "data/prepared/{dataset}.npz",
        "pipeline/stages.py",
        "pipeline/features.py",
    output:
        "models/{dataset}/classifier.pt",
        "results/{dataset}/classifier.json",
    params:
        classifier=section("datasets", "{dataset}", "classifier"),
    log:
        "logs/{dataset}/classifier.log",
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline classifier --dataset {wildcards.dataset} --log {log}"


rule train:
    wildcard_constraints:
        method="coopvaebm|vae",
    input:
        "data/prepared/{dataset}.npz",
        "pipeline/stages.py",
        "pipeline/nets.py",
        "pipeline/langevin.py",
        "pipeline/teaching.py",
        "pipeline/resume.py",
    output:
        "models/{dataset}/{method}.pt",
        "results/{dataset}/{method}/train/curves.csv",
        "results/{dataset}/{method}/train/curves.png",
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
    log:
        "logs/{dataset}/{method}/train.log",
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline train --dataset {wildcards.dataset} --method {wildcards.method} --log {log}"


# The authors' released CIFAR-10 checkpoint in our format. The TF files (params.yaml
# datasets.cifar10.methods.official.checkpoint) are not a declared input, like the raw archives of
# prepare: they come from outside (checkpoints.zip), the stage names them when they are missing, and
# every tensor is CRC-checked when read.
rule import_official:
    input:
        "pipeline/official.py",
        "pipeline/tfcheckpoint.py",
        "pipeline/tflayout.py",
    output:
        "models/cifar10/official.pt",
    params:
        nets=section("datasets", "cifar10", "nets"),
        method=section("datasets", "cifar10", "methods", "official"),
    log:
        "logs/cifar10/official/import.log",
    priority: 95
    conda:
        ENV
    shell:
        "python -m pipeline import-official --log {log}"


rule sample:
    input:
        "data/prepared/{dataset}.npz",
        "models/{dataset}/{method}.pt",
        "pipeline/stages.py",
        "pipeline/sample.py",
        "pipeline/langevin.py",
        "pipeline/teaching.py",
    output:
        "results/{dataset}/{method}/samples.npz",
        "results/{dataset}/{method}/samples.png",
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
        sample=section("datasets", "{dataset}", "sample"),
    log:
        "logs/{dataset}/{method}/sample.log",
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline sample --dataset {wildcards.dataset} --method {wildcards.method} --log {log}"


rule score:
    input:
        "data/prepared/{dataset}.npz",
        features,
        "results/{dataset}/{method}/samples.npz",
        "pipeline/stages.py",
    output:
        "results/{dataset}/{method}/metrics.json",
    params:
        score=section("datasets", "{dataset}", "score"),
    log:
        "logs/{dataset}/{method}/score.log",
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline score --dataset {wildcards.dataset} --method {wildcards.method} --log {log}"


rule score_real:
    input:
        "data/prepared/{dataset}.npz",
        features,
        "pipeline/stages.py",
    output:
        "results/{dataset}/real/metrics.json",
    params:
        score=section("datasets", "{dataset}", "score"),
    log:
        "logs/{dataset}/score-real.log",
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m pipeline score-real --dataset {wildcards.dataset} --log {log}"


rule tables:
    input:
        lambda w: [f"results/{w.dataset}/{m}/metrics.json" for m in [*methods(w.dataset), "real"]],
        "pipeline/tables.py",
    output:
        "results/tables/{dataset}.md",
        "results/tables/{dataset}.tex",
    log:
        "logs/{dataset}/tables.log",
    conda:
        ENV
    shell:
        "python -m pipeline tables --dataset {wildcards.dataset} --log {log}"


rule paper_tables:
    input:
        [f"results/{d}/{m}/metrics.json" for d in PAPER for m in evaluated(d)],
        "pipeline/tables.py",
        "pipeline/paper_numbers.yaml",
    output:
        "results/tables/paper.md",
        "results/tables/paper.tex",
    log:
        "logs/paper_tables.log",
    conda:
        ENV
    shell:
        "python -m pipeline paper-tables --log {log}"


rule check:
    input:
        lambda w: [f"results/{w.dataset}/{m}/metrics.json" for m in [*methods(w.dataset), "real"]],
        "pipeline/check.py",
    output:
        "results/{dataset}/check.json",
    params:
        check=section("check", "{dataset}"),
    log:
        "logs/{dataset}/check.log",
    conda:
        ENV
    shell:
        "python -m pipeline check --dataset {wildcards.dataset} --log {log}"
