# Scores: each run's samples, and the real-data floor (not seeded: the same for every run).


rule score:
    input:
        "data/prepared/{dataset}.npz",
        features,
        "results/{dataset}/{method}/seed{seed}/samples.npz",
        code("score"),
    output:
        "results/{dataset}/{method}/seed{seed}/metrics.json",
    params:
        score=section("datasets", "{dataset}", "score"),
    log:
        "logs/{dataset}/{method}/seed{seed}/score.log",
    threads: cores("score")
    resources:
        **cluster("score"),
    conda:
        ENV
    shell:
        "python -m pipeline score --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed} "
        "--log {log}"


rule score_real:
    input:
        "data/prepared/{dataset}.npz",
        features,
        code("score-real"),
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
