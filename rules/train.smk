# Training: one run per (dataset, method, seed); the seed is the run's training seed. The authors'
# CIFAR-10 checkpoint is imported, not trained (labelled seed 0).


rule train:
    wildcard_constraints:
        method="coopvaebm-noise|coopvaebm|vae|ebm|coopnets",
    input:
        "data/prepared/{dataset}.npz",
        code("train"),
        weights_checked,
    output:
        "models/{dataset}/{method}/seed{seed}.pt",
        "results/{dataset}/{method}/seed{seed}/train/curves.csv",
        report("results/{dataset}/{method}/seed{seed}/train/curves.png", caption="../report/curves.rst",
               category="Training curves", subcategory="{dataset}",
               labels={"dataset": "{dataset}", "method": "{method}", "seed": "{seed}"}),
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
    log:
        "logs/{dataset}/{method}/seed{seed}/train.log",
    threads: cores("train")
    resources:
        **cluster("train"),
    conda:
        ENV
    shell:
        "python -m pipeline train --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed} "
        "--log {log}"


# The authors' released CIFAR-10 checkpoint in our format. The TF files (params.yaml
# datasets.cifar10.methods.official.checkpoint) are not a declared input, like the raw archives of
# prepare: they come from outside (checkpoints.zip), the stage names them when they are missing, and
# every tensor is CRC-checked when read.
rule import_official:
    input:
        code("import-official"),
    output:
        "models/cifar10/official/seed0.pt",
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
