"""Compare metrics against the thresholds in params.yaml (``check:``); fail naming the metric crossed.

A method's value is the mean over its seeds (``pipeline.config.runs``: every seed, or the ``ci``
scope's) whose metrics are present; the real-data floor has no seed.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import runs


class ThresholdError(RuntimeError):
    """A metric crossed its threshold."""


def lookup(metrics: dict, key: str, path: object) -> float:
    """``metrics[key]``, or a value inside a block (``official.fid``: the FID of protocol ``official``)."""
    node: object = metrics
    if key in metrics:
        node = metrics[key]
    else:
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                have = ", ".join(sorted(k if not isinstance(v, dict) else f"{k}.*" for k, v in metrics.items()))
                raise KeyError(f"check rule names '{key}', but {path} has no such value (has: {have})")
            node = node[part]
    return float(node)  # type: ignore[arg-type]


def seed_values(dataset: str, ref: str, seeds: list[int]) -> dict[int, float]:
    """{seed: value} of ``<method>.<key>`` for the seeds whose results/<dataset>/<method>/seed<k>/metrics.json exist."""
    source, key = ref.split(".", 1)
    out = {}
    for seed in seeds:
        path = paths.metrics(dataset, source, seed)
        if not Path(path).exists():
            continue
        out[seed] = lookup(json.loads(Path(path).read_text()), key, path)
    return out


def metric_file_value(dataset: str, ref: str, seeds: dict[str, list[int]] | None = None) -> float:
    """``<source>.<key>``: ``real`` (the floor) from results/<dataset>/real/metrics.json, a method's the mean
    over ``seeds[method]`` present (default: seed 0).

    The digits classifier's accuracy is not checked here: its own stage fails below ``min_accuracy``.
    """
    source, key = ref.split(".", 1)
    if source == "real":
        path = paths.metrics(dataset, "real")
        return lookup(json.loads(Path(path).read_text()), key, path)
    wanted = (seeds or {}).get(source, [0])
    values = seed_values(dataset, ref, wanted)
    if not values:
        raise FileNotFoundError(f"check rule names {ref}, but no metrics of {source} seeds {wanted} exist "
                                f"({paths.metrics(dataset, source, wanted[0])} …): run its score stage")
    return statistics.mean(values.values())


def evaluate(rules: list[dict], value_of: Callable[[str], float]) -> list[dict]:
    """Evaluate each rule on ``value_of('<source>.<key>')``; one record per rule with the value, bound, ``ok``."""
    results = []
    for rule in rules:
        value = value_of(rule["metric"])
        if "max" in rule:
            bound, ok, text = rule["max"], value <= rule["max"], f"{rule['metric']} = {value:.4g} <= {rule['max']}"
        elif "min" in rule:
            bound, ok, text = rule["min"], value >= rule["min"], f"{rule['metric']} = {value:.4g} >= {rule['min']}"
        elif "margin" in rule:
            # "better by at least margin": the bound is the other value less the margin
            other = value_of(rule["below"])
            bound = other - rule["margin"]
            ok = value <= bound
            text = f"{rule['metric']} = {value:.4g} <= {rule['below']} - {rule['margin']} = {other:.4g} - {rule['margin']}"
        else:
            bound = value_of(rule["below"])
            ok, text = value < bound, f"{rule['metric']} = {value:.4g} < {rule['below']} = {bound:.4g}"
        results.append({"rule": text, "metric": rule["metric"], "value": value, "bound": bound, "ok": ok,
                        "why": rule.get("why", "")})
    return results


def check(params: dict, dataset: str, scope: str = "all") -> list[dict]:
    """Evaluate ``check.<dataset>`` on the means over the scope's seeds; write the report only when every rule holds."""
    seeds = runs(params, dataset, scope)
    rules, skipped = [], []
    for rule in params["check"].get(dataset, []):
        sources = {ref.split(".", 1)[0] for ref in (rule["metric"], rule.get("below", "real.x"))} - {"real"}
        # a rule on a method the scope does not run (e.g. ebm in the ci scope) is not applicable there
        (rules if sources <= set(seeds) else skipped).append(rule)
    results = evaluate(rules, lambda ref: metric_file_value(dataset, ref, seeds))
    for r in results:
        source = r["metric"].split(".", 1)[0]
        if source != "real":
            r["seeds"] = {str(k): v for k, v in seed_values(dataset, r["metric"], seeds.get(source, [0])).items()}
    failed = [r for r in results if not r["ok"]]
    if failed:
        lines = "\n".join(f"  - FAILED {r['rule']}" + (f"  ({r['why']})" if r["why"] else "") for r in failed)
        raise ThresholdError(f"{len(failed)} of {len(results)} checks on {dataset} ({scope} runs, mean over seeds) "
                             f"failed:\n{lines}\nThresholds live in params.yaml under check.{dataset}.")
    write_json(paths.check_report(dataset, scope), {"dataset": dataset, "scope": scope, "mean_over": "seeds present",
                                                    "checks": results, "not_in_scope": skipped})
    return results
