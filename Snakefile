# Thin workflow: every rule calls `python -m pipeline <stage>`; dvc.yaml runs the same command lines
# (tests/test_workflows.py keeps the two in agreement). Hyperparameters: params.yaml only.
import json

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

configfile: "params.yaml"
# `snakemake --report results/report.html`: this description, then every output marked report().
report: "report/workflow.rst"
validate(config, "pipeline/schema.yaml")

# Torch stages declare every core (`threads: cores(rule)`): Snakemake then runs them one at a
# time with OMP_NUM_THREADS = --cores, the thread count `dvc repro` uses too, so both tools give
# bit-identical results on one machine (float reductions depend on the thread count).


def cores(rule):
    """`threads:` of a torch rule: every core Snakemake was given (--cores) on one machine; on a
    cluster, the job's cpus_per_task (CLUSTER below), in the submitting and in the job's Snakemake.

    A function, not `threads: workflow.cores`: that is read when the Snakefile is parsed and stops
    commands that plan no job and take no --cores (`snakemake --unlock`, `--report`, and any run
    through a cluster executor) with "Workflow requires a total number of cores to be defined".
    """
    def get(wildcards):
        if workflow.non_local_exec:
            return cluster(rule)["cpus_per_task"](wildcards)
        try:
            return workflow.cores
        except WorkflowError:
            # No --cores: a command that runs no job but still builds them (--report reads each
            # job's threads for its captions); a local run without --cores stops before this.
            return 1
    return get


# Cluster resources (profiles/slurm; README "On a cluster"). Per rule: (mem_mb, runtime in minutes,
# cpus_per_task) for digits, then for a paper dataset (None: the rule does not run there). Digits:
# the whole chain takes minutes on 2 CPU cores, no GPU. Paper datasets (benchmarks/RESULTS.md, 2-core
# CPU): Inception features 12.12 h per 150,000 images and 3.87 GB RSS at 10,000 images (+29 KB per
# image) -> score/reference 8 cores, 16-24 GB, 12 h; train 1,000,000 iterations whose GPU time is
# unmeasured -> 48 h slots, and a job stopped by its time limit resumes from state/ when resubmitted.
# Override per rule with `set-resources:` in the profile or --set-resources.
CLUSTER = {
    "prepare": ((2000, 10, 1), (16000, 120, 2)),
    "reference": (None, (16000, 720, 8)),
    "classifier": ((2000, 20, 2), None),
    "train": ((4000, 60, 2), (32000, 2880, 8)),
    "import_official": (None, (4000, 30, 1)),
    "sample": ((2000, 20, 2), (16000, 240, 8)),
    "score": ((4000, 30, 2), (24000, 720, 8)),
    "score_real": ((4000, 30, 2), (16000, 360, 8)),
    "tables": ((1000, 5, 1), (1000, 5, 1)),
    "paper_tables": (None, (1000, 5, 1)),
    "check": ((1000, 5, 1), (1000, 5, 1)),
}
GPU_RULES = {"train", "sample"}  # one GPU each on the paper datasets; digits runs on CPU


def cluster(rule):
    """The `resources:` of `rule` (CLUSTER above), as functions of the job's dataset wildcard."""
    def size(wildcards):
        digits, paper = CLUSTER[rule]
        dataset = getattr(wildcards, "dataset", "cifar10")  # import_official, paper_tables: cifar10 only
        return digits if dataset in EMBEDDED else paper

    def gpu(wildcards):
        return 1 if rule in GPU_RULES and getattr(wildcards, "dataset", "cifar10") not in EMBEDDED else 0

    return {
        "mem_mb": lambda w: size(w)[0],
        "runtime": lambda w: size(w)[1],
        "cpus_per_task": lambda w: size(w)[2],
        "gpu": gpu,
    }

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
    resources:
        **cluster("prepare"),
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
    threads: cores("reference")
    resources:
        **cluster("reference"),
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
    threads: cores("classifier")
    resources:
        **cluster("classifier"),
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
        report("results/{dataset}/{method}/train/curves.png", caption="report/curves.rst",
               category="Training curves", subcategory="{dataset}", labels={"dataset": "{dataset}", "method": "{method}"}),
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
    log:
        "logs/{dataset}/{method}/train.log",
    threads: cores("train")
    resources:
        **cluster("train"),
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
    resources:
        **cluster("import_official"),
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
        report("results/{dataset}/{method}/samples.png", caption="report/samples.rst",
               category="Samples", subcategory="{dataset}", labels={"dataset": "{dataset}", "method": "{method}"}),
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
        sample=section("datasets", "{dataset}", "sample"),
    log:
        "logs/{dataset}/{method}/sample.log",
    threads: cores("sample")
    resources:
        **cluster("sample"),
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
    threads: cores("score")
    resources:
        **cluster("score"),
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
    threads: cores("score_real")
    resources:
        **cluster("score_real"),
    conda:
        ENV
    shell:
        "python -m pipeline score-real --dataset {wildcards.dataset} --log {log}"


rule tables:
    input:
        lambda w: [f"results/{w.dataset}/{m}/metrics.json" for m in [*methods(w.dataset), "real"]],
        "pipeline/tables.py",
    output:
        report("results/tables/{dataset}.md", caption="report/table.rst", category="Tables",
               labels={"dataset": "{dataset}"}),
        "results/tables/{dataset}.tex",
    log:
        "logs/{dataset}/tables.log",
    resources:
        **cluster("tables"),
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
    resources:
        **cluster("paper_tables"),
    conda:
        ENV
    shell:
        "python -m pipeline paper-tables --log {log}"


rule check:
    input:
        lambda w: [f"results/{w.dataset}/{m}/metrics.json" for m in [*methods(w.dataset), "real"]],
        "pipeline/check.py",
    output:
        report("results/{dataset}/check.json", caption="report/check.rst", category="Checks",
               labels={"dataset": "{dataset}"}),
    params:
        check=section("check", "{dataset}"),
    log:
        "logs/{dataset}/check.log",
    resources:
        **cluster("check"),
    conda:
        ENV
    shell:
        "python -m pipeline check --dataset {wildcards.dataset} --log {log}"
