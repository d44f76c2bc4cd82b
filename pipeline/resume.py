"""Crash-safe, resumable training: the state file of one run, its config fingerprint, the RNG states.

Where: ``state/<dataset>/<method>/seed<k>/train_state.pt`` (``paths.train_state``). Not a declared output on
purpose: Snakemake (``--rerun-incomplete``) and DVC (``dvc repro``, no ``persist``) delete a stage's
declared outputs before rerunning it, which would throw the rolling state away exactly when it is
needed. ``/state/`` is git-ignored and neither tool knows about it.

What: the nets, Adam moments and LR schedules, the trainer's ``torch.Generator``, the global RNGs of
torch (CPU and CUDA), NumPy and ``random``, the iteration counter and the curve rows so far. With it a
run killed at any moment (``kill -9`` included) and rerun resumes at the exact iteration of the last
save, mid-epoch too, and ends bit-identical (on the same device and thread count) to a run that was
never interrupted. Writes are atomic (``write_torch``: temporary file, fsync, rename), so the file is
always a whole state.

Lifetime: written every ``checkpoint_every`` iterations and after the last one, and *deleted* once the
declared checkpoint and curves are written. A state file therefore always means "an unfinished (or
diverged) run": the fingerprint check below then protects real work, and changing a hyperparameter
after a finished run just trains afresh instead of being refused. (Keeping finished states would
let a rerun with deleted outputs finish instantly, but every later params change would need a manual
``rm -r state/...``; DVC's cache already restores finished outputs.) A diverged run keeps its last
good state: the divergence guard runs before every save, so a saved state is never a diverged one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import read_torch, write_torch

log = logging.getLogger("pipeline")
STATE_FORMAT = 2  # 2: TF-"SAME" transposed convolutions and TF1 Adam state (tf1_t) in the optimiser groups
# Method keys that change when a state is saved or when training stops, not what is computed: a
# state stays resumable across them (e.g. raise max_energy_gap and resume a run the guard stopped).
NOT_FINGERPRINTED = ("checkpoint_every", "max_energy_gap")


class StateMismatchError(RuntimeError):
    """The state directory holds a run of another configuration (or an unreadable file)."""


def fingerprint(dataset: str, method: str, nets: dict, method_cfg: dict, x_train: np.ndarray) -> dict:
    """What decides a run's trajectory: dataset, method, nets, method params and the training images.

    Sections are keyed by their params.yaml path, so a difference names the exact key to look at.
    """
    return {
        "dataset": dataset,
        "method": method,
        f"datasets.{dataset}.nets": dict(nets),
        f"datasets.{dataset}.methods.{method}": {k: v for k, v in method_cfg.items() if k not in NOT_FINGERPRINTED},
        # Shape and hash, so that a re-prepared split of the same shape is not resumed into.
        "data": {"shape": list(x_train.shape),
                 "sha256": hashlib.sha256(np.ascontiguousarray(x_train).data).hexdigest()},
    }


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, current value)} for every leaf that differs (missing = None)."""
    a, b = _flatten(saved), _flatten(current)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def rng_state() -> dict:
    """The global RNG states (torch CPU and CUDA, NumPy, ``random``); reading them draws nothing."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # As tensors and plain values, so the state loads with torch.load(weights_only=True).
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> None:
    """Set the global RNGs to ``rng_state()``'s output (CUDA only when this machine has the same GPUs)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])


def save_state(path: Path, fp: dict, trainer: dict, iteration: int, curves: list[dict]) -> None:
    """Write the resume state after ``iteration`` iterations atomically (a kill leaves the previous one)."""
    write_torch(path, {"format": STATE_FORMAT, "fingerprint": fp, "iteration": iteration, "curves": list(curves),
                       "trainer": trainer, "rng": rng_state(), "numerics": numerics()})


def numerics() -> dict:
    """What else float results depend on: a resume under other values is valid but not bit-identical."""
    return {"torch": str(torch.__version__), "threads": torch.get_num_threads()}


def _fix(path: Path) -> str:
    return f"rm -r {path.parent}"


def load_state(path: Path, fp: dict) -> dict | None:
    """The saved state of this run (on the CPU), None when there is none; refuse one of another config.

    Also removes temporary files a kill during a save left behind (the state itself is whole).
    """
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if not path.exists():
        return None
    state = read_torch(path, STATE_FORMAT, "resume state",
                       f"Delete the state directory ({_fix(path)}) to train from scratch.", StateMismatchError)
    diff = differences(state["fingerprint"], fp)
    if diff:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
        raise StateMismatchError(
            f"{path} holds an unfinished run (iteration {state['iteration']}) of another configuration; "
            f"differing keys (state -> now): {listed}. Resuming it would mix two runs. To train afresh "
            f"with the current params delete the state directory ({_fix(path)}); to finish that run, "
            f"restore the params it was started with.")
    return state


def clear_state(path: Path) -> None:
    """Delete a finished run's state and its directory (and ``state/<dataset>``) when left empty."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    for d in (path.parent, path.parent.parent):
        with contextlib.suppress(OSError):  # not empty, or already gone
            d.rmdir()


def divergence_message(message: str, path: Path, last_good: int, outputs: list[Path]) -> str:
    """The guard's message plus what was kept, what was not written, and how to go on."""
    untouched = f"Nothing was written to {', '.join(map(str, outputs))}."
    if not (last_good and path.exists()):
        return (f"{message}. No good state was saved before it. {untouched} Lower the step sizes or learning "
                f"rates (or raise max_energy_gap) and rerun.")
    return (f"{message}. The last good state (iteration {last_good}) is kept in {path.parent}/; rerunning with "
            f"the same params resumes from it and diverges again. {untouched} Either raise max_energy_gap (not "
            f"part of the fingerprint) to resume past it, or change the params and delete the state directory "
            f"({_fix(path)}) to train afresh.")


def resume(path: Path, fp: dict, trainer) -> tuple[int, list[dict]]:
    """Load this run's state into ``trainer`` (a ``teaching.Trainer`` built as for a fresh run) and the
    global RNGs; return (iterations done, curve rows so far), (0, []) when there is no state."""
    from pipeline.teaching import load_trainer_state

    state = load_state(path, fp)
    if state is None:
        return 0, []
    load_trainer_state(trainer, state["trainer"])
    restore_rng(state["rng"])
    log.info("resumed from iteration %d (%s)", state["iteration"], path)
    if state["numerics"] != numerics():
        log.warning("the state was saved under %s, this run has %s: the result will be valid but not bit-identical "
                    "to an uninterrupted run", state["numerics"], numerics())
    return int(state["iteration"]), list(state["curves"])
