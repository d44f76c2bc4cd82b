"""Compare metrics against the thresholds in params.yaml (``check:``); fail naming the metric crossed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from pipeline import paths
from pipeline.atomic import write_json


class ThresholdError(RuntimeError):
    """A metric crossed its threshold."""


def metric_file_value(dataset: str, ref: str) -> float:
    """``<source>.<key>`` from results/<dataset>/<source>/metrics.json; source is a method or ``real`` (the floor).

    The digits classifier's accuracy is not checked here: its own stage fails below ``min_accuracy``.
    """
    source, key = ref.split(".", 1)
    path = paths.metrics(dataset, source)
    metrics = json.loads(Path(path).read_text())
    if key not in metrics:
        raise KeyError(f"check rule names {ref}, but {path} has no '{key}' (has: {', '.join(sorted(metrics))})")
    return float(metrics[key])


def evaluate(rules: list[dict], value_of: Callable[[str], float]) -> list[dict]:
    """Evaluate each rule on ``value_of('<source>.<key>')``; one record per rule with the value, bound, ``ok``."""
    results = []
    for rule in rules:
        value = value_of(rule["metric"])
        if "max" in rule:
            bound, ok, text = rule["max"], value <= rule["max"], f"{rule['metric']} = {value:.4g} <= {rule['max']}"
        elif "min" in rule:
            bound, ok, text = rule["min"], value >= rule["min"], f"{rule['metric']} = {value:.4g} >= {rule['min']}"
        else:
            bound = value_of(rule["below"])
            ok, text = value < bound, f"{rule['metric']} = {value:.4g} < {rule['below']} = {bound:.4g}"
        results.append({"rule": text, "metric": rule["metric"], "value": value, "bound": bound, "ok": ok,
                        "why": rule.get("why", "")})
    return results


def check(params: dict, dataset: str) -> list[dict]:
    """Evaluate ``check.<dataset>``; write results/<dataset>/check.json only when every rule holds."""
    results = evaluate(params["check"].get(dataset, []), lambda ref: metric_file_value(dataset, ref))
    failed = [r for r in results if not r["ok"]]
    if failed:
        lines = "\n".join(f"  - FAILED {r['rule']}" + (f"  ({r['why']})" if r["why"] else "") for r in failed)
        raise ThresholdError(f"{len(failed)} of {len(results)} checks on {dataset} failed:\n{lines}\n"
                             f"Thresholds live in params.yaml under check.{dataset}.")
    write_json(paths.check_report(dataset), {"dataset": dataset, "checks": results})
    return results
