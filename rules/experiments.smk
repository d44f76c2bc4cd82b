# The official code's experiments on a coopvaebm run (pipeline/experiments.py): completion (inpaint)
# and reconstruction (recon) with numbers, interpolation (inter) and trajectory (visual) as pictures.
# One rule per stage (same names as the dvc.yaml stages); params.stage names the CLI stage.
# Planned on the embedded dataset (digits): its classifier scores the completions. On the paper's
# datasets the stages run by hand (MSE only) once params.yaml gives them an `experiments` section.


# What each experiment reads from params.yaml (a change reruns it).
EXPERIMENT_PARAMS = dict(
    nets=section("datasets", "{dataset}", "nets"),
    method=section("datasets", "{dataset}", "methods", "{method}"),
    experiments=section("datasets", "{dataset}", "experiments"),
)


rule completion:
    wildcard_constraints:
        dataset="|".join(EMBEDDED) or "^$",
        method=EXPERIMENT_METHOD,
    input:
        experiment_inputs("completion"),
    output:
        "results/{dataset}/{method}/seed{seed}/completion.json",
        "results/{dataset}/{method}/seed{seed}/completion.png",
    params:
        **EXPERIMENT_PARAMS,
        stage="completion",
    log:
        "logs/{dataset}/{method}/seed{seed}/completion.log",
    threads: cores("experiment")
    resources:
        **cluster("experiment"),
    conda:
        ENV
    shell:
        "python -m pipeline {params.stage} --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed} "
        "--log {log}"


use rule completion as reconstruction with:
    input:
        experiment_inputs("reconstruction"),
    params:
        **EXPERIMENT_PARAMS,
        stage="reconstruction",
    output:
        "results/{dataset}/{method}/seed{seed}/reconstruction.json",
        "results/{dataset}/{method}/seed{seed}/reconstruction.png",
    log:
        "logs/{dataset}/{method}/seed{seed}/reconstruction.log",


use rule completion as interpolation with:
    input:
        experiment_inputs("interpolation"),
    params:
        **EXPERIMENT_PARAMS,
        stage="interpolation",
    output:
        "results/{dataset}/{method}/seed{seed}/interpolation.png",
    log:
        "logs/{dataset}/{method}/seed{seed}/interpolation.log",


use rule completion as trajectory with:
    input:
        experiment_inputs("trajectory"),
    params:
        **EXPERIMENT_PARAMS,
        stage="trajectory",
    output:
        "results/{dataset}/{method}/seed{seed}/trajectory.png",
    log:
        "logs/{dataset}/{method}/seed{seed}/trajectory.log",
