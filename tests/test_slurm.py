"""The digits chain on a real SLURM cluster: `snakemake --profile profiles/slurm digits`.

`.ci/slurm_local.sh` starts a single-node SLURM on this machine (munge, MariaDB, slurmdbd, slurmctld,
slurmd from Debian's packages), runs the scenario below against it and stops every daemon. The
scenario runs in a temporary copy of the repository with tiny iteration counts (test_workflows.TINY):
one SLURM job per Snakemake job, the same bytes as a local run at the same thread count, nothing
planned by a second call, and a train job killed by `scancel` that resumes from state/ on rerun.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_workflows import BIN, run, tiny_copy

ROOT = Path(__file__).resolve().parents[1]
SBIN = ("/usr/sbin", "/usr/bin", "/sbin")


def _have(binary: str) -> bool:
    return shutil.which(binary) is not None or any(Path(d, binary).exists() for d in SBIN)


MISSING = [b for b in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd") if not _have(b)]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="starts SLURM, munge and MariaDB daemons: needs root"),
    pytest.mark.skipif(bool(MISSING), reason=f"SLURM binaries absent ({', '.join(MISSING)}): "
                       "apt-get install slurm-wlm slurmdbd munge mariadb-server (.ci/run does)"),
]

# Runs inside the cluster (SLURM_CONF set by slurm_local.sh), in the repository copy; $OUT collects
# what the test asserts on. Each snakemake call's exit status goes to a file, so one failing call does
# not hide the others' evidence.
SCENARIO = r"""
set -u
SM="snakemake --profile profiles/slurm --slurm-init-seconds-before-status-checks 2"
$SM digits >"$OUT/run1.log" 2>&1; echo $? >"$OUT/run1.rc"
$SM digits >"$OUT/run2.log" 2>&1; echo $? >"$OUT/run2.rc"
sinfo >"$OUT/sinfo.txt" 2>&1
sacct -X --parsable2 --noheader --format=JobID,JobName,State,ExitCode,AllocCPUS,ReqMem >"$OUT/sacct1.txt" 2>&1

# Longer coopvaebm training (200 iterations), a state every 20; cancelled once a state exists.
python - <<'EOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["datasets"]["digits"]["methods"]["coopvaebm"].update(epochs=10, checkpoint_every=20)
open("params.yaml", "w").write(yaml.safe_dump(p, sort_keys=False))
EOF
$SM --retries 0 digits >"$OUT/run3.log" 2>&1 &
SMPID=$!
for _ in $(seq 1 600); do
  [[ -f state/digits/coopvaebm/seed0/train_state.pt ]] && break
  kill -0 $SMPID 2>/dev/null || break
  sleep 0.5
done
JOB=$(sed -n 's/.*submitted with SLURM jobid \([0-9]*\) (log: .*rule_train\/digits_coopvaebm_0.*/\1/p' "$OUT/run3.log" | tail -n 1)
echo "$JOB" >"$OUT/cancelled.jobid"
ls state/digits/coopvaebm/seed0/ >"$OUT/state_before_rerun.txt" 2>&1
scancel "$JOB"
# snakemake-executor-plugin-slurm 2.8.0 does not count sacct's state "CANCELLED by <uid>" as failed and
# would wait for the job forever (on SIGTERM it only waits for its running jobs): docs/cluster.md tells the
# user to kill it, unlock and rerun, as done here.
sleep 5
kill -TERM $SMPID
for _ in $(seq 1 120); do kill -0 $SMPID 2>/dev/null || break; sleep 0.5; done
kill -0 $SMPID 2>/dev/null && { kill -KILL $SMPID; echo "SIGKILL" >"$OUT/run3.killed"; }
wait $SMPID; echo $? >"$OUT/run3.rc"
[[ -f "$OUT/run3.killed" ]] && snakemake --unlock >>"$OUT/run3.log" 2>&1
ls state/digits/coopvaebm/seed0/ >>"$OUT/state_before_rerun.txt" 2>&1
$SM digits >"$OUT/run4.log" 2>&1; echo $? >"$OUT/run4.rc"
sacct -X --parsable2 --noheader --format=JobID,JobName,State,ExitCode,AllocCPUS,ReqMem >"$OUT/sacct2.txt" 2>&1
"""

SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: .*?/slurm_logs/rule_(\w+)/([\w.-]+)/\d+\.log\)")
# The `digits` target: coopvaebm and vae at seed 0 (params.yaml ci.digits), the experiments of
# coopvaebm seed 0, and the ci-scope tables and check.
DIGITS_JOBS = {("prepare", "digits"), ("classifier", "digits"), ("train", "digits_coopvaebm_0"),
               ("train", "digits_vae_0"), ("sample", "digits_coopvaebm_0"), ("sample", "digits_vae_0"),
               ("score", "digits_coopvaebm_0"), ("score", "digits_vae_0"), ("score_real", "digits"),
               ("completion", "digits_coopvaebm_0"), ("reconstruction", "digits_coopvaebm_0"),
               ("interpolation", "digits_coopvaebm_0"), ("trajectory", "digits_coopvaebm_0"),
               ("tables_ci", "digits"), ("check_ci", "digits")}


def sacct_states(text: str) -> dict[str, str]:
    return {line.split("|")[0]: line.split("|")[2] for line in text.splitlines() if "|" in line}


def test_digits_chain_on_slurm(tmp_path):
    root = tiny_copy(tmp_path / "repo")
    local = tiny_copy(tmp_path / "local")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PIPELINE_PROGRESS": "0", "OUT": str(out)}
    proc = subprocess.run(["bash", str(ROOT / ".ci/slurm_local.sh"), "bash", "-c", SCENARIO], cwd=root, env=env,
                          text=True, capture_output=True, timeout=1800)
    logs = {p.name: p.read_text() for p in out.iterdir()}
    context = f"slurm_local.sh rc {proc.returncode}\n{proc.stderr[-3000:]}\n" + "\n".join(
        f"--- {k}\n{v[-2500:]}" for k, v in sorted(logs.items()))
    print(context)  # kept by pytest on failure, and the sinfo/sacct record of a passing run with -s
    record = os.environ.get("PIPELINE_SLURM_RECORD")  # .ci/run prints the cluster's record of its jobs
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        for name in ("sinfo.txt", "sacct1.txt", "sacct2.txt", "cancelled.jobid"):
            if name in logs:
                Path(record, name).write_text(logs[name])
    assert proc.returncode == 0, context

    # 1. Every Snakemake job ran as its own SLURM job, and each of those completed.
    assert logs["run1.rc"].strip() == "0", context
    submitted = SUBMITTED.findall(logs["run1.log"])
    assert {(rule, wc) for _, rule, wc in submitted} == DIGITS_JOBS, submitted
    assert len(submitted) == len(DIGITS_JOBS) == len({j for j, _, _ in submitted})
    states = sacct_states(logs["sacct1.txt"])
    assert {j: states.get(j) for j, _, _ in submitted} == {j: "COMPLETED" for j, _, _ in submitted}, logs["sacct1.txt"]
    assert len(states) == len(DIGITS_JOBS), "a SLURM job that is no Snakemake job (or one job twice)"
    assert re.search(r"^local\*?\s+up\s+infinite\s+1\s+idle\s", logs["sinfo.txt"], re.M), logs["sinfo.txt"]

    # 2. A second call plans nothing and submits nothing.
    assert logs["run2.rc"].strip() == "0" and "Nothing to be done" in logs["run2.log"], logs["run2.log"][-2000:]
    assert "submitted with SLURM jobid" not in logs["run2.log"]

    # 3. The same bytes as a local run with the same thread count (2: the digits cpus_per_task).
    run(["snakemake", "--cores", "2", "digits"], local)
    # (the SLURM copy's files were overwritten by the scancel part below only for coopvaebm; compare
    # what that part does not rerun)
    for f in ("data/prepared/digits.npz", "models/digits/classifier.pt", "models/digits/vae/seed0.pt",
              "results/digits/vae/seed0/samples.npz", "results/digits/vae/seed0/metrics.json", "results/digits/real/metrics.json"):
        assert (root / f).read_bytes() == (local / f).read_bytes(), f"{f} differs between SLURM and local runs"

    # 4. scancel during training; the rerun resumes from state/ and completes the chain.
    job = logs["cancelled.jobid"].strip()
    assert job and "train_state.pt" in logs["state_before_rerun.txt"], logs["state_before_rerun.txt"]
    assert logs["run3.rc"].strip() != "0", "the run whose train job was cancelled did not fail"
    assert sacct_states(logs["sacct2.txt"]).get(job, "").startswith("CANCELLED"), logs["sacct2.txt"]  # "CANCELLED by 0"
    assert logs["run4.rc"].strip() == "0", logs["run4.log"][-3000:]
    train_log = (root / "logs/digits/coopvaebm/seed0/train.log").read_text()
    resumed = [int(n) for n in re.findall(r"resumed from iteration (\d+)", train_log)]
    assert resumed and resumed[-1] > 0, train_log[-2000:]
    assert not (root / "state/digits/coopvaebm/seed0/train_state.pt").exists()  # deleted once the checkpoint exists
    for f in ("models/digits/coopvaebm/seed0.pt", "results/digits/coopvaebm/seed0/metrics.json",
              "results/digits/check-ci.json"):
        assert (root / f).is_file(), f
    steps = [int(float(line.split(",")[0])) for line in
             (root / "results/digits/coopvaebm/seed0/train/curves.csv").read_text().splitlines()[1:]]
    assert steps and steps[0] < resumed[-1] < steps[-1], (resumed, steps[:3], steps[-3:])  # one curve, before and after
