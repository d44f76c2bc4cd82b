# Tables and checks: every method x seed of a dataset (scope all), or the runs params.yaml ci.<dataset>
# names (scope ci: `make reproduce`, written beside as <name>-ci.*); the paper's tables.


rule tables:
    input:
        lambda w: metrics(w.dataset),
        lambda w: experiments(w.dataset),
        code("tables"),
    output:
        report("results/tables/{dataset}.md", caption="../report/table.rst", category="Tables",
               labels={"dataset": "{dataset}", "scope": "all"}),
        "results/tables/{dataset}.tex",
    params:
        epochs=epochs,  # the epochs column (pipeline/tables.py epochs_of)
        scope="",  # tables_ci: " --scope ci"
    log:
        "logs/{dataset}/tables.log",
    resources:
        **cluster("tables"),
    conda:
        ENV
    shell:
        "python -m pipeline tables --dataset {wildcards.dataset} --log {log}{params.scope}"


use rule tables as tables_ci with:
    wildcard_constraints:
        dataset="|".join(config.get("ci", {})) or "^$",
    input:
        lambda w: metrics(w.dataset, "ci"),
        lambda w: experiments(w.dataset, "ci"),
        code("tables"),
    output:
        report("results/tables/{dataset}-ci.md", caption="../report/table.rst", category="Tables",
               labels={"dataset": "{dataset}", "scope": "ci"}),
        "results/tables/{dataset}-ci.tex",
    params:
        epochs=epochs,
        scope=" --scope ci",
    log:
        "logs/{dataset}/tables-ci.log",


rule paper_tables:
    input:
        paper_metrics(),
        code("paper-tables"),
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
        lambda w: metrics(w.dataset),
        code("check"),
    output:
        report("results/{dataset}/check.json", caption="../report/check.rst", category="Checks",
               labels={"dataset": "{dataset}", "scope": "all"}),
    params:
        check=section("check", "{dataset}"),
        scope="",  # check_ci: " --scope ci"
    log:
        "logs/{dataset}/check.log",
    resources:
        **cluster("check"),
    conda:
        ENV
    shell:
        "python -m pipeline check --dataset {wildcards.dataset} --log {log}{params.scope}"


use rule check as check_ci with:
    wildcard_constraints:
        dataset="|".join(config.get("ci", {})) or "^$",
    input:
        lambda w: metrics(w.dataset, "ci"),
        code("check"),
    output:
        report("results/{dataset}/check-ci.json", caption="../report/check.rst", category="Checks",
               labels={"dataset": "{dataset}", "scope": "ci"}),
    params:
        check=section("check", "{dataset}"),
        scope=" --scope ci",
    log:
        "logs/{dataset}/check-ci.log",
