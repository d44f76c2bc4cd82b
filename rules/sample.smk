# Sampling: each run's proposals and (methods with an EBM) their Langevin revisions.


rule sample:
    input:
        "data/prepared/{dataset}.npz",
        "models/{dataset}/{method}/seed{seed}.pt",
        code("sample"),
    output:
        "results/{dataset}/{method}/seed{seed}/samples.npz",
        report("results/{dataset}/{method}/seed{seed}/samples.png", caption="../report/samples.rst", category="Samples",
               subcategory="{dataset}", labels={"dataset": "{dataset}", "method": "{method}", "seed": "{seed}"}),
    params:
        nets=section("datasets", "{dataset}", "nets"),
        method=section("datasets", "{dataset}", "methods", "{method}"),
        sample=section("datasets", "{dataset}", "sample"),
    log:
        "logs/{dataset}/{method}/seed{seed}/sample.log",
    threads: cores("sample")
    resources:
        **cluster("sample"),
    conda:
        ENV
    shell:
        "python -m pipeline sample --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed} "
        "--log {log}"
