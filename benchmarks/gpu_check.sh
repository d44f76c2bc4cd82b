#!/usr/bin/env bash
# The GPU check, one command (`make gpu-check`, or this script):
#
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--out FILE]
#
# 1. the CIFAR-10 chain on format fixtures with tiny iteration counts on the device: prepare →
#    reference → train → sample → score (random-weight Inception in the real formats);
#    benchmarks/gpu_check_chain.py.
# 2. `python -m pipeline bench` at the paper's CIFAR-10 configuration: one training iteration, ours
#    against the reference, fp32; ours in bf16; ours in bf16 + torch.compile; then sampling and
#    Inception throughput; then the official Fashion-MNIST configuration (mnist nets), fp32.
# Every table goes to FILE (default benchmarks/gpu_check/<device>.md), written atomically at the end,
# with the device, date and commands. cuda: sized for ≤ 8 minutes on one H100-class GPU. cpu: a
# smoke (CI runs it): the same steps on the digits configuration with single repetitions, without
# compile (measured slower on CPU, benchmarks/RESULTS.md), in minutes.
#
# Installs nothing (a GPU machine may have no network): it runs this checkout's package through
# PYTHONPATH with $PYTHON (default .venv/bin/python when present, else python3), which must provide
# torch, torchvision, numpy, scipy, pyyaml, jsonschema, pillow, matplotlib, scikit-learn, tqdm,
# torch-fidelity, clean-fid and pytest (the fixture writers live in tests/). It checks them first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

DEVICE=cuda
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (--device cuda|cpu, --out FILE)" >&2; exit 2 ;;
  esac
done
[[ "$DEVICE" == cuda || "$DEVICE" == cpu ]] || { echo "gpu_check.sh: --device cuda or cpu" >&2; exit 2; }
OUT="${OUT:-benchmarks/gpu_check/$DEVICE.md}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PIPELINE_PROGRESS=0
if [[ "$DEVICE" == cpu ]]; then
  export CUDA_VISIBLE_DEVICES=""   # score and reference pick cuda when they see one
fi

"$PYTHON" - <<'EOF'
import importlib, sys
mods = ["torch", "torchvision", "numpy", "scipy", "yaml", "jsonschema", "PIL", "matplotlib", "sklearn", "tqdm",
        "torch_fidelity", "cleanfid", "pytest"]
missing = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as exc:  # an import can fail with more than ImportError (a broken binary)
        missing.append(f"{m} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("gpu_check.sh: this Python lacks " + "; ".join(missing) + ". Nothing is installed here: "
             "install the pinned versions of pyproject.toml, or set PYTHON to an interpreter that has them.")
EOF

TMP_OUT="$(mktemp "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
trap 'rm -f "$TMP_OUT"' EXIT
T0=$SECONDS

section() {  # section TITLE COMMAND...: run, echo to the terminal, record title, command and output
  local title=$1; shift
  echo "== $title: $*" >&2
  {
    echo
    echo "### $title"
    echo
    echo "\`$*\`"
    echo
    echo '```'
  } >>"$TMP_OUT"
  local t=$SECONDS
  "$@" | tee -a "$TMP_OUT"   # stdout: the tables; logs and progress bars stay on stderr
  local rc=${PIPESTATUS[0]}
  echo '```' >>"$TMP_OUT"
  echo "($((SECONDS - t)) s, exit $rc)" >>"$TMP_OUT"
  return "$rc"
}

{
  echo "# GPU check: $DEVICE"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), \`bash benchmarks/gpu_check.sh --device $DEVICE\`"
  "$PYTHON" -c "import torch; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'; print(f'torch {torch.__version__}, {d}')"
} >"$TMP_OUT"

section "CIFAR-10 chain on fixtures (tiny)" "$PYTHON" benchmarks/gpu_check_chain.py --device "$DEVICE"

BENCH=("$PYTHON" -m pipeline bench --device "$DEVICE")
if [[ "$DEVICE" == cuda ]]; then
  section "train, fp32, ours vs reference (paper config)" "${BENCH[@]}" --dataset cifar10 --parts train
  section "train, bf16" "${BENCH[@]}" --dataset cifar10 --parts train --precision bf16 --no-reference
  section "train, bf16 + compile" "${BENCH[@]}" --dataset cifar10 --parts train --precision bf16 --compile \
    --no-reference --warmup 3
  section "sampling and Inception throughput, fp32" "${BENCH[@]}" --dataset cifar10 --parts sample inception \
    --n-sample 10000 --n-inception 1000 --repeats 3
  section "Fashion-MNIST, official configuration (mnist nets), fp32" "${BENCH[@]}" --dataset fashion-mnist \
    --preset fashion-mnist-official --parts train sample --n-sample 10000 --repeats 3
else
  SMOKE=(--dataset digits --warmup 0 --repeats 1)
  section "train, fp32, ours vs reference (digits, smoke)" "${BENCH[@]}" "${SMOKE[@]}" --parts train
  section "train, bf16 (digits, smoke)" "${BENCH[@]}" "${SMOKE[@]}" --parts train --precision bf16 --no-reference
  echo "bf16 + compile: skipped on cpu (compile measured slower on CPU, benchmarks/RESULTS.md)" | tee -a "$TMP_OUT"
  section "sampling and Inception throughput (smoke)" "${BENCH[@]}" "${SMOKE[@]}" --parts sample inception \
    --n-sample 64 --n-inception 20 --inception-batch 10
fi

echo >>"$TMP_OUT"
echo "total wall time: $((SECONDS - T0)) s" >>"$TMP_OUT"
mkdir -p "$(dirname "$OUT")"
# Atomic: a partial file never replaces a complete one.
cp "$TMP_OUT" "$OUT.tmp" && mv -f "$OUT.tmp" "$OUT"
echo "gpu_check.sh: tables in $OUT ($((SECONDS - T0)) s)" >&2
