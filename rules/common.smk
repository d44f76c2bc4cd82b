# The lists and helpers every rule file shares (params.yaml's datasets, methods, seeds, runs, targets).
import json

# Torch stages declare every core (`threads: workflow.cores`): Snakemake then runs them one at a
# time with OMP_NUM_THREADS = --cores, the thread count `dvc repro` uses too, so both tools give
# bit-identical results on one machine (float reductions depend on the thread count).

# Used with --use-conda; without it the rules run in the current environment (make install).
ENV = "../envs/pipeline.yaml"  # `conda:` paths are relative to the rule file (rules/*.smk)

DATASETS = list(config["datasets"])
# digits is scored on its own classifier's features (fd_digits); the paper's datasets with Inception.
EMBEDDED = [d for d in DATASETS if d == "digits"]
PAPER = [d for d in DATASETS if d not in EMBEDDED]
# The official code's experiments, run on the paper's method (pipeline/paths.py EXPERIMENTS).
EXPERIMENT_METHOD = "coopvaebm"
SCORED_EXPERIMENTS = ["completion", "reconstruction"]
PICTURE_EXPERIMENTS = ["interpolation", "trajectory"]


def methods(dataset):
    """The methods trained here (per-dataset tables and checks); not the imported authors' checkpoint."""
    return [m for m in config["datasets"][dataset]["methods"] if m != "official"]


def evaluated(dataset):
    """Every method sampled and scored, the authors' checkpoint (`official`, cifar10) included."""
    return list(config["datasets"][dataset]["methods"])


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


def targets(dataset, scope="all"):
    """A dataset's tables and check, with the experiment pictures of the scope's runs."""
    suffix = "" if scope == "all" else f"-{scope}"
    return [f"results/tables/{dataset}{suffix}.md", f"results/tables/{dataset}{suffix}.tex",
            f"results/{dataset}/check{suffix}.json",
            *experiments(dataset, scope, SCORED_EXPERIMENTS + PICTURE_EXPERIMENTS, "png")]


def features(wildcards):
    """What score reads besides the samples: the digits classifier, or the real images' Inception features."""
    if wildcards.dataset in EMBEDDED:
        return [f"models/{wildcards.dataset}/classifier.pt", "pipeline/metrics.py"]
    return [f"data/reference/{wildcards.dataset}.npz", "pipeline/inception.py"]


def experiment_inputs(name):
    """The run's checkpoint and data; completion also the classifier (its accuracy on the completions)."""
    def get(wildcards):
        d, m, s = wildcards.dataset, wildcards.method, wildcards.seed
        out = [f"data/prepared/{d}.npz", f"models/{d}/{m}/seed{s}.pt", "pipeline/stages.py",
               "pipeline/experiments.py", "pipeline/langevin.py", "pipeline/pictures.py"]
        if name == "completion":
            out += [f"models/{d}/classifier.pt", "pipeline/features.py"]
        return out
    return get
