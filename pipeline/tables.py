"""Tables, markdown and LaTeX: each dataset's metrics with the real-data floor (mean ± std over seeds and
each seed's value), the experiments (completion, reconstruction), and the paper's image-generation tables
with the paper's number, ours and the difference side by side, plus peers' published numbers as context."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import yaml

from pipeline import paths
from pipeline.atomic import write_text
from pipeline.config import dataset_cfg, runs, score_name

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
EMBEDDED = ("digits", "fashion-mnist")  # scored on their own classifier (as pipeline.stages.common)
METRIC_NAMES = {"fid": "FID", "inception_score": "Inception Score"}

Table = tuple[str, str, list[str], list[tuple[str, ...]], str]  # (name, title, header, rows, footnote)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _load(dataset: str, method: str, seed: int | None = None) -> dict:
    return json.loads(Path(paths.metrics(dataset, method, seed)).read_text())


def _seeded(dataset: str, method: str, seeds: list[int]) -> dict[int, dict]:
    """{seed: metrics} of a method's runs; every one must exist (the workflows make them first)."""
    return {s: _load(dataset, method, s) for s in seeds}


def mean_std(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± std`` (sample standard deviation, n − 1) over seeds; one value alone: the value, no ± (n = 1)."""
    vals = [v * scale for v in values]
    if not vals:
        return "—"
    if len(vals) == 1:
        return _fmt(vals[0], digits)
    return f"{_fmt(statistics.mean(vals), digits)} ± {_fmt(statistics.stdev(vals), digits)}"


def per_seed(values: dict[int, float], digits: int = 2) -> str:
    """Each seed's value: ``s0 4.12, s1 3.98``."""
    return ", ".join(f"s{k} {_fmt(v, digits)}" for k, v in values.items())


def _counts(m: dict) -> str:
    return f"{m['n_samples']} / {m['n_reference']} ({m['reference']})"


def epochs_of(params: dict, dataset: str, methods: list[str]) -> dict[str, str]:
    """Each method's training epochs as params.yaml sets them (the tables stages declare those keys), so a
    table says how long each row trained; "—" where a method sets none."""
    cfg = dataset_cfg(params, dataset)["methods"]
    return {m: str(cfg[m]["epochs"]) if "epochs" in cfg[m] else "—" for m in methods}


def embedded_rows(dataset: str, seeds: dict[str, list[int]],
                  epochs: dict[str, str] | None = None) -> tuple[list[str], list[tuple[str, ...]]]:
    """digits: fd/KID on the classifier's features, one row per method (mean ± std over its seeds, its
    training epochs) and the floor."""
    epochs = epochs or {}
    fd, kid = f"fd_{score_name(dataset)}", f"kid_{score_name(dataset)}"
    header = ["method", "seeds", "epochs", f"{fd} (Langevin-revised)", f"{fd} (proposal only: VAE / generator)",
              "KID ×10³ (final samples)", f"{fd} per seed (final samples)", "samples / reference"]
    out = []
    for method, ss in seeds.items():
        ms = _seeded(dataset, method, ss)
        finals = {s: m[fd] for s, m in ms.items()}
        if method == "vae":  # the VAE alone: its samples are proposals, nothing is revised
            revised, proposal = "—", mean_std(list(finals.values()))
        else:  # the short-run EBM has no proposal (chains from noise): no fd_<dataset>_vae
            revised = mean_std(list(finals.values()))
            proposal = mean_std([m[f"{fd}_vae"] for m in ms.values() if f"{fd}_vae" in m])
        out.append((method, str(len(ss)), epochs.get(method, "—"), revised, proposal,
                    mean_std([m[kid] for m in ms.values()], scale=1e3),
                    per_seed(finals), _counts(next(iter(ms.values())))))
    m = _load(dataset, "real")
    # digits' floor is the test split against the training images; Fashion-MNIST's names its own images
    label = f"real data (floor): {m['samples']}" if "samples" in m else "real data, test split (floor)"
    out.append((label, "—", "—", _fmt(m[fd]), "—",
                f"{_fmt(m[kid] * 1e3)} ± {_fmt(m[f'{kid}_std'] * 1e3)}", "—", _counts(m)))
    return header, out


def protocol_text(name: str, block: dict) -> str:
    """How a protocol's numbers were made, as the tables print it."""
    conv = {"official": "both through the official float → uint8 conversion",
            "none": "reference as stored"}[block["conversion"]]
    return (f"{name}: {block['n_samples']} samples vs the first {block['n_reference']} {block['reference']} images, "
            f"{conv}")


def inception_rows(dataset: str, seeds: dict[str, list[int]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Paper datasets: torch-fidelity FID/IS/KID and clean-fid FID, one row per FID protocol and method (mean ±
    std over seeds), then the floor under each protocol."""
    header = ["method", "FID protocol", "seeds", "FID (Langevin-revised)", "FID (proposal only)", "Inception Score",
              "KID ×10³", "clean-FID (clean)", "clean-FID (legacy TF)", "FID per seed", "samples / reference"]
    out = []
    real = _load(dataset, "real")
    for protocol in real["protocols"]:
        for method, ss in seeds.items():
            ms = [m[protocol] for m in _seeded(dataset, method, ss).values()]
            col = lambda k, scale=1.0: mean_std([m[k] for m in ms if k in m], scale=scale)  # noqa: E731
            revised = method != "vae"
            out.append((method, protocol, str(len(ss)), col("fid") if revised else "—", col("fid_vae"),
                        col("inception_score"), col("kid", 1e3), col("fid_cleanfid_clean"),
                        col("fid_cleanfid_legacy_tensorflow"), per_seed({s: m["fid"] for s, m in zip(ss, ms)}),
                        _counts(ms[0])))
        m = real[protocol]
        out.append(("real data, test split (floor)", protocol, "—", _fmt(m["fid"]), "—",
                    f"{_fmt(m['inception_score'])} ± {_fmt(m['inception_score_std'])}",
                    f"{_fmt(m['kid'] * 1e3)} ± {_fmt(m['kid_std'] * 1e3)}", _fmt(m["fid_cleanfid_clean"]),
                    _fmt(m["fid_cleanfid_legacy_tensorflow"]), "—", _counts(m)))
    return header, out


def embedded_inception_table(dataset: str, seeds: dict[str, list[int]]) -> Table | None:
    """Fashion-MNIST's Inception FID / IS / KID (mean ± std over seeds), when every run's score stage and the
    floor's found the Inception weights (metrics.json ``inception``); None otherwise."""
    runs_of = {method: _seeded(dataset, method, ss) for method, ss in seeds.items()}
    real = _load(dataset, "real").get("inception")
    if not seeds or real is None or any("inception" not in m for ms in runs_of.values() for m in ms.values()):
        return None
    header = ["method", "seeds", "FID (Langevin-revised)", "FID (proposal only)", "Inception Score", "KID ×10³",
              "clean-FID (clean)", "FID per seed (final samples)"]
    body = []
    for method, ms in runs_of.items():
        blocks = {s: m["inception"] for s, m in ms.items()}
        col = lambda k, scale=1.0: mean_std([b[k] for b in blocks.values() if k in b], scale=scale)  # noqa: E731
        body.append((method, str(len(blocks)), "—" if method == "vae" else col("fid"),
                     col("fid") if method == "vae" else col("fid_vae"), col("inception_score"), col("kid", 1e3),
                     col("fid_cleanfid_clean"), per_seed({s: b["fid"] for s, b in blocks.items()})))
    body.append(("real data (floor)", "—", _fmt(real["fid"]), "—",
                 f"{_fmt(real['inception_score'])} ± {_fmt(real['inception_score_std'])}",
                 f"{_fmt(real['kid'] * 1e3)} ± {_fmt(real['kid_std'] * 1e3)}", _fmt(real["fid_cleanfid_clean"]), "—"))
    note = (f"Inception-v3 features (torch-fidelity's TF-compatible network; clean-fid's `clean` mode), the grey "
            f"images repeated to three channels, against the same reference as the table above; computed because "
            f"the weight files were present. Generated by `python -m pipeline tables --dataset {dataset}`.")
    return f"{dataset}_inception", f"{dataset}: FID, Inception Score and KID (Inception-v3 features)", header, body, note


# The method whose runs the experiments use (Snakefile/dvc.yaml plan them for it).
EXPERIMENT_METHOD = "coopvaebm"


def experiments_table(dataset: str, seeds: list[int]) -> Table | None:
    """Completion (hidden-half MSE, classifier accuracy) and reconstruction (MSE), mean ± std over seeds.

    None when the runs have no experiment results (a scope without coopvaebm).
    """
    if not seeds:
        return None
    comp = [json.loads(Path(paths.experiment(dataset, EXPERIMENT_METHOD, s, "completion", "json")).read_text())
            for s in seeds]
    rec = [json.loads(Path(paths.experiment(dataset, EXPERIMENT_METHOD, s, "reconstruction", "json")).read_text())
           for s in seeds]
    acc = "accuracy_truth" in comp[0]
    header = ["images", "completion: MSE on the hidden half", *(["completion: classifier accuracy"] if acc else []),
              "reconstruction: MSE"]
    body = []
    masked = f"masked input (hidden half = {comp[0]['fill']:g})"
    for label, ck, rk in ((masked, "masked", None), ("VAE alone", "vae", "vae"),
                          (f"VAE + Langevin ({comp[0]['langevin_steps']} steps)", "completed", "refined")):
        row = [label, mean_std([c[f"mse_hidden_{ck}"] for c in comp], 4)]
        if acc:
            row.append(mean_std([c[f"accuracy_{ck}"] for c in comp], 3))
        row.append(mean_std([r[f"mse_{rk}"] for r in rec], 4) if rk else "—")
        body.append(tuple(row))
    if acc:
        body.append(("real test images (truth)", "0", mean_std([c["accuracy_truth"] for c in comp], 3), "0"))
    title = (f"{dataset}: completion (bottom half hidden) and reconstruction by {EXPERIMENT_METHOD}, "
             f"mean ± std over seeds {', '.join(map(str, seeds))}")
    note = (f"First {comp[0]['n_images']} test images; per-pixel MSE in [−1, 1]; the VAE codes are the encoder's "
            f"means. Completion keeps the visible half of each image; accuracy: the {dataset} classifier's on the "
            f"completed images. Generated by `python -m pipeline tables --dataset {dataset}`.")
    return f"{dataset}_experiments", title, header, body, note


def dataset_table(params: dict, dataset: str, scope: str = "all") -> Table:
    """One dataset's table: every method of the scope (mean ± std over its seeds) and the real-data floor."""
    seeds = runs(params, dataset, scope)
    if dataset in EMBEDDED:
        header, body = embedded_rows(dataset, seeds, epochs_of(params, dataset, list(seeds)))
        title = f"{dataset}: Fréchet distance and KID on the {dataset} classifier's features (lower is better)"
        note = (f"Not FID: the features are those of a small classifier trained on the {dataset} training split "
                "(Inception does not fit these images).")
    else:
        header, body = inception_rows(dataset, seeds)
        title = f"{dataset}: FID, Inception Score and KID (Inception-v3 features)"
        note = ("FID, IS and KID by torch-fidelity (TF-compatible Inception, the paper-era numbers); clean-FID by "
                "clean-fid in its `clean` and `legacy_tensorflow` modes, under each FID protocol of params.yaml "
                "(score.protocols): " + "; ".join(protocol_text(k, v) for k, v in _protocols(dataset).items())
                + ". Samples clipped to [−1, 1], mapped to uint8 by truncation (the official conversion).")
    note += (" Mean ± sample standard deviation over the training seeds (one value: one seed). ebm: chains from "
             "uniform noise, no proposal; coopnets: the proposal is its generator's.")
    flag = "" if scope == "all" else f" --scope {scope}"
    return dataset, title, header, body, note + f" Generated by `python -m pipeline tables --dataset {dataset}{flag}`."


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> list[dict]:
    """The paper's cells; a value without a source is refused (no number from memory)."""
    return load_paper_numbers_doc(path)["tables"]


def load_paper_numbers_doc(path: Path = PAPER_NUMBERS) -> dict:
    """The whole file: the paper's ``tables`` and the peers' ``context``; every value needs a source."""
    doc = yaml.safe_load(path.read_text())
    tables = doc["tables"]
    ctx = doc.get("context")
    if ctx is not None and not ctx.get("source"):
        raise ValueError(f"{path}: context has values but no source")
    for t in tables:
        for c in t["cells"]:
            missing = {"dataset", "method", "metric", "value"} - set(c)
            if missing:
                raise ValueError(f"{path}: cell {c} lacks {sorted(missing)}")
            if c["value"] is not None and not c.get("source"):
                raise ValueError(f"{path}: cell {c['dataset']}/{c['method']}/{c['metric']} has a value but no source")
    return doc


def _protocols(dataset: str) -> dict[str, dict]:
    """{protocol: its settings} as the floor's metrics record them (the score stages write every protocol)."""
    real = _load(dataset, "real")
    return {k: real[k] for k in real["protocols"]}


def _ours(params: dict, dataset: str, method: str, metric: str) -> list[tuple[float | None, str, str]]:
    """[(value, shown text, protocol)] of our number under each FID protocol, the mean over the method's seeds
    present; one entry saying why when there is none."""
    if dataset not in params["datasets"] or method not in params["datasets"][dataset]["methods"]:
        return [(None, "not configured here", "—")]
    seeds = params["datasets"][dataset]["methods"][method].get("seeds", [0])
    found = [paths.metrics(dataset, method, s) for s in seeds if Path(paths.metrics(dataset, method, s)).exists()]
    if not found:
        return [(None, f"not run ({paths.metrics(dataset, method, seeds[0])} absent: see README, Full reproduction)",
                 "—")]
    ms = [json.loads(Path(f).read_text()) for f in found]
    # the Langevin-revised samples, except for the VAE alone: its own samples
    key = f"{metric}_vae" if method == "vae" else metric
    out = []
    for protocol in ms[0]["protocols"]:
        blocks = [m[protocol] for m in ms]
        if key not in blocks[0]:
            out.append((None, f"not run ({found[0]} has no '{protocol}.{key}')", protocol))
            continue
        values = [float(b[key]) for b in blocks]
        out.append((statistics.mean(values), mean_std(values),
                    f"{protocol_text(protocol, blocks[0])}, {ms[0].get('implementation', '?')}; {len(values)} seed(s)"))
    return out


# Baselines trained here on the paper's datasets: their rows show our numbers ("not run" until run).
BASELINES = ("coopvaebm-noise", "coopnets", "ebm")
# How the baselines table names them: ours is not the published short-run EBM's configuration.
BASELINE_LABELS = {"ebm": "ebm (our variant)"}


def paper_tables(params: dict) -> list[Table]:
    """The paper's image-generation tables (paper's number, ours, difference), our baselines on the paper's
    datasets, and peers' published numbers as context (not the CoopVAEBM paper's own)."""
    header = ["dataset", "method", "metric", "paper", "ours", "ours − paper", "our protocol"]
    out = []
    doc = load_paper_numbers_doc()
    for t in doc["tables"]:
        body = []
        for c in t["cells"]:
            paper = "not recovered" if c["value"] is None else _fmt(float(c["value"]))
            for ours, shown, protocol in _ours(params, c["dataset"], c["method"], c["metric"]):
                diff = _fmt(ours - float(c["value"])) if ours is not None and c["value"] is not None else "—"
                body.append((c["dataset"], c.get("label", c["method"]), METRIC_NAMES.get(c["metric"], c["metric"]),
                             paper, shown, diff, protocol))
        sources = sorted({" ".join(c["source"].split()) for c in t["cells"] if c.get("source")})
        note = (("Paper numbers: " + "; ".join(sources) if sources else "No paper number of this table recovered")
                + ". \"not recovered\": the paper's value could not be read "
                "from any source available to us (pipeline/paper_numbers.yaml). FID is comparable only at the same "
                "sample count and reference set: each of our numbers is shown under every FID protocol of "
                "params.yaml (score.protocols), named in the last column; which protocol the paper used is not "
                "known. Generated by `python -m pipeline paper-tables`.")
        out.append((t["name"], t["title"], header, body, note))
    body = []
    for dataset in ("cifar10", "svhn", "celeba"):
        for method in BASELINES:
            for metric in ("fid",):
                for _, shown, protocol in _ours(params, dataset, method, metric):
                    body.append((dataset, BASELINE_LABELS.get(method, method), METRIC_NAMES[metric], shown, protocol))
    out.append(("baselines", "Baselines trained here on the paper's datasets (ours, mean ± std over seeds)",
                ["dataset", "method", "metric", "ours", "our protocol"], body,
                "coopvaebm-noise: the paper's Langevin with its noise term; coopnets: CoopNets (no encoder); ebm: "
                "our variant of a short-run EBM from uniform noise (Langevin without noise, 30 steps of 0.007, tuned "
                "on digits), not the configuration of Nijkamp et al. 2019, so not comparable with the 44.50 "
                "published for theirs. The CoopVAEBM paper's numbers for these are not recovered. "
                "Generated by `python -m pipeline paper-tables`."))
    ctx = doc["context"]
    body = []
    for c in ctx["cells"]:
        if c.get("ours"):
            ours = "; ".join(f"{c['ours']}: {shown}" + (f" ({protocol.split(':')[0]})" if protocol != "—" else "")
                             for _, shown, protocol in _ours(params, c["dataset"], c["ours"], c["metric"]))
        elif c.get("unlike"):  # a method of ours shares the name but not the configuration
            ours = c["unlike"]
        else:
            ours = "no counterpart here"
        body.append((c["dataset"], c["model"], METRIC_NAMES.get(c["metric"], c["metric"]), _fmt(float(c["value"])),
                     ours))
    out.append(("context", ctx["title"], ["dataset", "model (published)", "metric", "published", "ours (closest method)"],
                body, "Context only, NOT the CoopVAEBM paper's numbers: " + " ".join(ctx["source"].split())
                + ". Generated by `python -m pipeline paper-tables`."))
    return out


def markdown(table: Table) -> str:
    _, title, header, body, note = table
    return "\n".join([f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
                      *("| " + " | ".join(r) + " |" for r in body), "", note, ""])


def _esc(s: str) -> str:
    return (s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")
            .replace("#", r"\#").replace("—", "--").replace("−", "-").replace("±", r"$\pm$")
            .replace("×10³", r"$\times 10^3$").replace("Fréchet", r"Fr\'echet").replace("`", ""))


def latex(table: Table) -> str:
    _, title, header, body, note = table
    text_columns = {"dataset", "method", "metric", "our protocol", "FID protocol", "images", "model (published)",
                    "ours (closest method)", "seeds"}
    return "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{" + "".join("l" if h in text_columns else "r" for h in header) + "}",
        r"\toprule", " & ".join(_esc(h) for h in header) + r" \\", r"\midrule",
        *(" & ".join(_esc(c) for c in r) + r" \\" for r in body),
        r"\bottomrule", r"\end{tabular}", rf"\caption{{{_esc(title)}. {_esc(note)}}}", r"\end{table}", "",
    ])


def write(table: Table, stem: str) -> None:
    write_text(paths.table(stem, "md"), markdown(table))
    write_text(paths.table(stem, "tex"), latex(table))


def tables(params: dict, dataset: str, scope: str = "all") -> None:
    """Write results/tables/<dataset>.md and .tex (scope ``ci``: <dataset>-ci.*): the methods, then the experiments."""
    ts = [dataset_table(params, dataset, scope)]
    inc = embedded_inception_table(dataset, runs(params, dataset, scope)) if dataset in EMBEDDED else None
    if inc is not None:
        ts.append(inc)
    # the workflows run the experiments on the embedded dataset (Snakefile: experiments())
    exp = experiments_table(dataset, runs(params, dataset, scope).get(EXPERIMENT_METHOD, [])) \
        if dataset in EMBEDDED else None
    if exp is not None:
        ts.append(exp)
    write_text(paths.table(dataset, "md", scope), "\n".join(markdown(t) for t in ts))
    write_text(paths.table(dataset, "tex", scope), "\n".join(latex(t) for t in ts))


def write_paper_tables(params: dict) -> None:
    """Write results/tables/paper.md and .tex: every paper table, one after the other."""
    ts = paper_tables(params)
    write_text(paths.table("paper", "md"), "\n".join(markdown(t) for t in ts))
    write_text(paths.table("paper", "tex"), "\n".join(latex(t) for t in ts))
