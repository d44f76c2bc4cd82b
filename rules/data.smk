# Data: decoded datasets, the real images' Inception features (paper datasets), the digits classifier.

# Data and the real images' features first (priority): a missing archive or Inception weight file
# then stops the workflow with its download message before any training starts.
rule prepare:
    input:
        code("prepare"),
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
        code("reference"),
    output:
        "data/reference/{dataset}.npz",
    params:
        # the keys that change the features (dvc.yaml: the same three), not the KID/IS settings
        score=subsection(REFERENCE_KEYS, "datasets", "{dataset}", "score"),
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


# The Inception weights are there (or were downloaded), before any training of a paper dataset: every
# train job of the dataset takes the marker as an input (rules/train.smk). PIPELINE_INCEPTION_DIR (or
# score.inception_weights_dir) names one directory for both libraries' files, e.g. on shared storage.
rule weights:
    input:
        code("weights"),
    output:
        "data/reference/{dataset}-weights.json",
    params:
        score=subsection(WEIGHTS_KEYS, "datasets", "{dataset}", "score"),
    log:
        "logs/{dataset}/weights.log",
    wildcard_constraints:
        dataset="|".join(PAPER) or "^$",
    priority: 100
    resources:
        **cluster("weights"),
    conda:
        ENV
    shell:
        "python -m pipeline weights --dataset {wildcards.dataset} --log {log}"


rule classifier:
    wildcard_constraints:
        dataset="|".join(EMBEDDED) or "^$",
    input:
        "data/prepared/{dataset}.npz",
        code("classifier"),
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


