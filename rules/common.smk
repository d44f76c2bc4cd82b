# The lists and helpers every rule file shares (params.yaml's datasets, methods, seeds, runs, targets).
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Code inputs are computed, not listed (pipeline/codedeps.py walks the imports of each stage's
# module; stdlib only, nothing imported from torch here). This checkout's package first, so
# that a copy of the repository declares its own files.
sys.path.insert(0, workflow.basedir)
from pipeline.codedeps import code_inputs  # noqa: E402

# Torch stages declare every core (`threads: cores(rule)`): Snakemake then runs them one at a
# time with OMP_NUM_THREADS = --cores, the thread count `dvc repro` uses too, so both tools give
# bit-identical results on one machine (float reductions depend on the thread count).

# Used with --use-conda; without it the rules run in the current environment (make install).
ENV = "../envs/pipeline.yaml"  # `conda:` paths are relative to the rule file (rules/*.smk)

DATASETS = list(config["datasets"])
# digits and fashion-mnist are scored on their own classifier's features (fd_digits, fd_fashion); the paper's
# datasets with Inception (pipeline.codedeps.EMBEDDED: the same list).
EMBEDDED = [d for d in DATASETS if d in ("digits", "fashion-mnist")]
PAPER = [d for d in DATASETS if d not in EMBEDDED]
# The official code's experiments, run on the paper's method (pipeline/paths.py EXPERIMENTS).
EXPERIMENT_METHOD = "coopvaebm"
SCORED_EXPERIMENTS = ["completion", "reconstruction"]
PICTURE_EXPERIMENTS = ["interpolation", "trajectory"]
# What the reference stage reads of the score section (the FID protocols: reference sets, counts and
# conversions; the Inception pass's batch size); where the weights are looked for and the KID/IS
# settings do not change the features.
REFERENCE_KEYS = ["protocols", "batch_size"]
# What the weights check reads: whether it may download (where it looks does not change the marker).
WEIGHTS_KEYS = ["download_weights"]


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


# Cluster resources (profiles/slurm; docs/cluster.md). Per rule: (mem_mb, runtime in minutes,
# cpus_per_task) for digits and fashion-mnist (EMBEDDED), then for a paper dataset (None: not run there). For digits,
# the whole chain takes minutes on 2 CPU cores, no GPU. Paper datasets (benchmarks/RESULTS.md, 2-core
# CPU): Inception features 12.12 h per 150,000 images and 3.87 GB RSS at 10,000 images (+29 KB per
# image) -> score/reference 8 cores, 16-24 GB, 12 h (a CPU figure) and one GPU; train 1,000,000 iterations whose GPU time is
# unmeasured -> 48 h slots, and a job stopped by its time limit resumes from state/ when resubmitted.
# The experiments (completion, reconstruction, interpolation, trajectory) are sized like sample.
# Overrides: `set-resources` in the profile, or --set-resources on the command line.
CLUSTER = {
    "prepare": ((2000, 10, 1), (16000, 120, 2)),
    "reference": (None, (16000, 720, 8)),
    "weights": (None, (2000, 30, 1)),
    "classifier": ((4000, 30, 2), None),  # fashion-mnist's: 2.2 GB peak, 305 s on one thread (docs/fashion-mnist.md)
    "train": ((4000, 60, 2), (32000, 2880, 8)),
    "import_official": (None, (4000, 30, 1)),
    "sample": ((2000, 20, 2), (16000, 240, 8)),
    "experiment": ((2000, 20, 2), (16000, 240, 8)),
    "score": ((4000, 30, 2), (24000, 720, 8)),
    "score_real": ((4000, 30, 2), (16000, 360, 8)),
    "tables": ((1000, 5, 1), (1000, 5, 1)),
    "paper_tables": (None, (1000, 5, 1)),
    "check": ((1000, 5, 1), (1000, 5, 1)),
}
# One GPU each on the paper datasets (the Inception passes of reference, score and score_real too:
# 50,000-image passes on a CPU node take half a day); digits runs on CPU.
GPU_RULES = {"train", "sample", "experiment", "reference", "score", "score_real"}


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


def methods(dataset):
    """The methods trained here (per-dataset tables and checks); not the imported authors' checkpoint."""
    return [m for m in config["datasets"][dataset].get("methods", {}) if m != "official"]


def official_available():
    """The authors' CIFAR-10 checkpoint is there (params.yaml datasets.cifar10.methods.official.checkpoint):
    only then do the paper tables wait for its scores; without it their row reads "not run"."""
    official = config["datasets"].get("cifar10", {}).get("methods", {}).get("official")
    return bool(official) and Path(official["checkpoint"] + ".index").is_file()


def paper_metrics():
    """The scores paper_tables waits for: our own runs on every paper dataset, and the authors' checkpoint's
    when its files are there. A run that failed (with --keep-going) leaves the table unplanned:
    `python -m pipeline paper-tables` writes it with what exists ("not run" for the rest)."""
    ours = [f"results/{d}/{m}/seed{s}/metrics.json" for d in PAPER for m in methods(d) for s in seeds(d, m)]
    return ours + (["results/cifar10/official/seed0/metrics.json"] if official_available() else [])


def seeds(dataset, method):
    """A method's training seeds; the authors' one released run is labelled seed 0."""
    return list(config["datasets"][dataset]["methods"][method].get("seeds", [0]))


def runs(dataset, scope="all"):
    """(method, seed) pairs a dataset's tables and check cover: every one, or params.yaml ci.<dataset>'s."""
    if scope == "all":
        return [(m, s) for m in methods(dataset) for s in seeds(dataset, m)]
    ci = config["ci"][dataset]
    return [(m, s) for m in ci["methods"] for s in seeds(dataset, m) if s in ci["seeds"]]


def metrics(dataset, scope="all"):
    return [f"results/{dataset}/{m}/seed{s}/metrics.json" for m, s in runs(dataset, scope)] + \
        [f"results/{dataset}/real/metrics.json"]


def experiments(dataset, scope="all", kinds=SCORED_EXPERIMENTS, ext="json"):
    """The experiment outputs of the scope's runs of EXPERIMENT_METHOD: planned on the embedded dataset,
    whose classifier scores the completions (dvc.yaml's stages need one list of dependencies)."""
    if dataset not in EMBEDDED:
        return []
    return [f"results/{dataset}/{m}/seed{s}/{e}.{ext}" for m, s in runs(dataset, scope) if m == EXPERIMENT_METHOD
            for e in kinds]


def section(*keys):
    """The params.yaml subtree a rule depends on, so that changing it (and only it) reruns the rule."""
    def get(wildcards):
        node = config
        for key in keys:
            node = node[getattr(wildcards, key.strip("{}")) if key.startswith("{") else key]
        return json.dumps(node, sort_keys=True)
    return get


def data_targets(dataset):
    """The data stages of a dataset with a classifier: prepared, classifier trained and gated, the real-data floor."""
    return [f"results/{dataset}/classifier.json", f"results/{dataset}/real/metrics.json"]


def targets(dataset, scope="all"):
    """A dataset's tables and check, with the experiment pictures of the scope's runs; for a dataset that
    configures no methods yet (fashion-mnist, until its training is wired), its data stages."""
    if not config["datasets"][dataset].get("methods"):
        return data_targets(dataset)
    suffix = "" if scope == "all" else f"-{scope}"
    return [f"results/tables/{dataset}{suffix}.md", f"results/tables/{dataset}{suffix}.tex",
            f"results/{dataset}/check{suffix}.json",
            *experiments(dataset, scope, SCORED_EXPERIMENTS + PICTURE_EXPERIMENTS, "png")]


def code(stage):
    """The code inputs of `stage` on the job's dataset: the import closure of the module that runs it
    (pipeline/codedeps.py), so editing a module reruns exactly the stages that execute it."""
    def get(wildcards):
        return code_inputs(stage, getattr(wildcards, "dataset", None))
    return get


def epochs(wildcards):
    """Each method's `epochs` (the tables' epochs column): the tables rerun when one changes."""
    methods = config["datasets"][wildcards.dataset]["methods"]
    return json.dumps({m: c.get("epochs") for m, c in methods.items()}, sort_keys=True)


def subsection(keys, *path):
    """Only `keys` of the params.yaml mapping at `path`: a stage that reads a few keys of a shared section
    (reference: the reference set, not the KID settings) reruns only when those change."""
    def get(wildcards):
        node = json.loads(section(*path)(wildcards))
        return json.dumps({k: node.get(k) for k in keys}, sort_keys=True)
    return get


def weights_checked(wildcards):
    """A paper dataset's train job waits for the Inception weights check (the weights rule): ancient, so the
    marker orders the jobs and a newer one reruns no training."""
    if wildcards.dataset in EMBEDDED:
        return []
    return [ancient(f"data/reference/{wildcards.dataset}-weights.json")]


def features(wildcards):
    """What score reads besides the samples: the digits classifier, or the real images' Inception features."""
    if wildcards.dataset in EMBEDDED:
        return [f"models/{wildcards.dataset}/classifier.pt"]
    return [f"data/reference/{wildcards.dataset}.npz"]


def experiment_inputs(name):
    """The run's checkpoint and data; completion also the classifier (its accuracy on the completions)."""
    def get(wildcards):
        d, m, s = wildcards.dataset, wildcards.method, wildcards.seed
        out = [f"data/prepared/{d}.npz", f"models/{d}/{m}/seed{s}.pt", *code_inputs(name, d)]
        if name == "completion":
            out.append(f"models/{d}/classifier.pt")
        return out
    return get
