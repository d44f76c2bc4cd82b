"""params.yaml: load it, validate it against pipeline/schema.yaml, hand out one dataset's section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, unparsable, or breaks the schema."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    # Name the offending key itself: for an unknown key jsonschema reports the parent's path.
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        parent = _key_path(error)
        keys = ", ".join(f"{parent}.{k}" if error.absolute_path else k for k in extra)
        return f"unknown key {keys} (allowed here: {allowed})"
    return f"{_key_path(error)}: {error.message}"


def validate(params: Any, source: str = "params.yaml") -> dict:
    """Validate a params mapping against the schema; raise ``ConfigError`` naming every bad key."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(
            f"{source} does not match the schema ({SCHEMA_PATH}):\n{lines}\n"
            f"Fix these keys in {source}; the schema lists every allowed key, its type and range."
        )
    _check_protocols(params, source)
    return params


def _check_protocols(params: dict, source: str) -> None:
    # Across sections, so beyond the schema: a protocol cannot score more samples than the sample stage makes.
    for name, d in params.get("datasets", {}).items():
        for proto, p in d.get("score", {}).get("protocols", {}).items():
            made = d.get("sample", {}).get("n_samples")
            if made is not None and p["n_samples"] > made:
                raise ConfigError(f"{source}: datasets.{name}.score.protocols.{proto}.n_samples = {p['n_samples']}, "
                                  f"but datasets.{name}.sample.n_samples makes only {made}: lower the protocol's "
                                  "n_samples or sample more")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found: run from the repository root or pass --params.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return validate(params, str(path))


def dataset_cfg(params: dict, dataset: str) -> dict:
    """The section of one dataset, with a clear error when it is not configured."""
    try:
        return params["datasets"][dataset]
    except KeyError:
        known = ", ".join(params["datasets"])
        raise ConfigError(f"dataset '{dataset}' is not in params.yaml (configured: {known})") from None


# The name in the classifier scores' keys (fd_<name>, kid_<name>) where it is not the dataset key itself:
# a check rule's metric is `<method>.<key>` with no '-' in the key (pipeline/schema.yaml).
SCORE_NAMES = {"fashion-mnist": "fashion"}


def score_name(dataset: str) -> str:
    """``<name>`` of a dataset's classifier scores fd_<name> / kid_<name>: fashion-mnist -> fashion, digits -> digits."""
    return SCORE_NAMES.get(dataset, dataset)


def method_cfg(params: dict, dataset: str, method: str) -> dict:
    """The training section of one method on one dataset."""
    methods = dataset_cfg(params, dataset)["methods"]
    if method not in methods:
        raise ConfigError(f"method '{method}' is not configured for dataset '{dataset}' in params.yaml "
                          f"(configured: {', '.join(methods)})")
    return methods[method]


def runs(params: dict, dataset: str, scope: str = "all") -> dict[str, list[int]]:
    """{method: seeds} that a dataset's tables and check cover.

    ``all``: every method trained here (not the imported ``official``) with its ``seeds``; ``ci``: the
    methods and seeds ``ci.<dataset>`` names (what ``make reproduce`` runs), each limited to the seeds
    the method has.
    """
    methods = {m: list(c.get("seeds", [0])) for m, c in dataset_cfg(params, dataset)["methods"].items()
               if m != "official"}
    if scope == "all":
        return methods
    if scope != "ci":
        raise ConfigError(f"unknown scope {scope!r} (all or ci)")
    ci = params.get("ci", {}).get(dataset)
    if ci is None:
        raise ConfigError(f"params.yaml has no ci.{dataset}: the ci scope of {dataset} names no runs")
    unknown = [m for m in ci["methods"] if m not in methods]
    if unknown:
        raise ConfigError(f"ci.{dataset}.methods names {unknown}, not configured for {dataset}")
    return {m: [s for s in methods[m] if s in ci["seeds"]] for m in ci["methods"]}
