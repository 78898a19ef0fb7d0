#!/usr/bin/env bash
# The TPU benchmark run: recurrax against every JAX peer on a Cloud TPU VM, with its Mosaic kernels as levers.
# Never run on a TPU yet: this script, the Mosaic kernels and every number it would write are unmeasured there.
#
#   bash benchmarks/run_tpu.sh          # a fresh TPU VM: install from $WHEELS into a venv, run, write $OUT (caps: < 8 min)
#   bash benchmarks/run_tpu.sh --image  # a machine whose python3 already has jax[tpu] (jax, jaxlib, libtpu): the
#                                       # wheels in $WHEELS (default ./.whl: flax, equinox, dm-haiku, keras, ... as
#                                       # missing) are installed --no-deps beside it
#   bash benchmarks/run_tpu.sh --smoke  # here, on CPU, with the current Python: the kernel check of the TPU kernels
#                                       # in Pallas's TPU interpreter, then every suite once on tiny shapes, recurrax
#                                       # and the floor only, torch hidden as on a TPU VM (each step capped at SMOKE_S,
#                                       # default 180 s)
#
# What it runs, each step a process of its own under its own time cap (SIGINT: what was measured is written,
# and the JSON's meta.interrupted_in names the suite that was cut), in the order that matters:
#   0. kernels → $OUT/tpu_kernels.json: is kernel="pallas" right here, i.e. the Mosaic kernels compiled by libtpu
#               (benchmarks/kernel_check.py --kernels pallas: LSTM, GRU, minGRU, LRU; each row records the
#               backend and the kernel variant that ran). cuDNN does not exist on a TPU and is not checked.
#   1. peers   → $OUT/tpu.json, tpu.md: the four shapes, LSTM and GRU, train and forward, every JAX peer (Flax
#               NNX and Linen, Equinox, Haiku, Keras; no PyTorch on a TPU VM), recurrax with kernel="pallas"
#               where step 0 found it right.
#   2. levers  → $OUT/tpu_levers.*: recurrax's own variants at (64,256,128,256): hoisting, unroll, fused, remat, kernel.
#   3. linear  → $OUT/tpu_linear.*: sequential against parallel scan of minGRU (linear and log space), T = 1024 and
#               4096, and the parallel path with kernel="pallas" where step 0 found it right for minGRU and the LRU.
#   4. scaling → $OUT/tpu_scaling.*: an LSTM training step for T = 64 … 16384.
# Steps 1 and 2 time the kernel only where step 0 found it right forwards (outputs and gradients within 1e-3 of the
# step loop) and compiled in under KERNEL_COMPILE_S seconds (default 20) for the LSTM and GRU; step 3 likewise for
# minGRU and the LRU. The summary says which were left out and why, and which failed reversed.
# A summary of what finished and what was cut is printed at the end and written to $OUT/tpu_run.txt, after the
# device line (jax.devices()[0].device_kind: the TPU generation, e.g. "TPU v5 lite").
#
# TAR_TO=FILE: after every step, a gzipped tar of $OUT is written to FILE.
#
# Assumes only: a Cloud TPU VM (Linux x86_64, the TPU runtime's devices), python3.11 or 3.12 ($PYTHON, default
# python3.11: jax 0.10.2 needs >= 3.11, and the TPU VM images on Ubuntu 22.04 ship 3.10, so install one first,
# e.g. `sudo apt-get install python3.11 python3.11-venv`), this repository as the working directory, and a folder
# of wheels ($WHEELS, default ./wheels) — nothing is downloaded.
# The wheel folder must hold, for that Python (cp311 or cp312), manylinux x86_64, with all their dependencies:
#   jax==0.10.2 jaxlib==0.10.2 libtpu==0.0.42.1 requests       (= "jax[tpu]==0.10.2": it pins libtpu==0.0.42.*,
#                                                                 which is on PyPI; no extra index is needed)
#   flax==0.12.8 optax chex orbax-checkpoint numpy tqdm matplotlib   (recurrax's own dependencies)
#   equinox dm-haiku keras                                            (the JAX peers; no torch)
# The one command that fills it, on a Linux x86_64 machine with internet and the same Python version as the VM
# (the wheels are cp311/cp312-specific; resolved with pip's dry run on 2026-12-05: 58 wheels, libtpu
# libtpu-0.0.42.1-cp311-cp311-manylinux_2_31_x86_64.whl):
#   python3.11 -m pip download -d wheels "jax[tpu]==0.10.2" flax==0.12.8 optax chex orbax-checkpoint numpy tqdm \
#       matplotlib equinox dm-haiku keras
#
# Time: installing takes 1-2 minutes from $WHEELS (seconds with --image); the steps' caps (seconds) are
# KERNELS_S, PEERS_S, LEVERS_S, LINEAR_S, SCALING_S (defaults 70, 230, 40, 70, 40, each including its
# process's start-up: 7.5 minutes). Mosaic compile times are unknown: a cut step keeps what it measured.
set -euo pipefail

# The argument, the installs, run, usable_kernels and the summary: shared with run_gpu.sh.
source "$(dirname "${BASH_SOURCE[0]}")/_steps.sh"
parse_mode run_tpu.sh "$@"

export KERAS_BACKEND=jax
export PYTHONUNBUFFERED=1

if [ "$SMOKE" = 1 ]; then
    smoke_setup tpu  # no TPU required
    # The TPU (Mosaic) kernels in Pallas's TPU interpreter: the option sets recurrax.cells._pallas.OFF_DEVICE_VARIANT.
    COMMON=(--smoke --peers floor,recurrax_peer --kernel-variant tpu)
    # Interpreted kernels compile slowly here; the smoke run checks the plumbing, not compile times.
    KERNEL_COMPILE_S="${KERNEL_COMPILE_S:-120}"
    # A TPU VM has no torch: hide this Python's, so the smoke run proves the harness runs without it.
    NO_TORCH="$(mktemp -d /tmp/recurrax-no-torch.XXXXXX)"
    mkdir "$NO_TORCH/torch"
    echo 'raise ImportError("torch is hidden: run_tpu.sh --smoke runs as on a TPU VM, without PyTorch")' \
        >"$NO_TORCH/torch/__init__.py"
    trap 'rm -rf "$NO_TORCH"' EXIT
    export PYTHONPATH="$NO_TORCH${PYTHONPATH:+:$PYTHONPATH}"
elif [ "$IMAGE" = 1 ]; then
    OUT="${OUT:-./benchmarks/results}"
    install_image_wheels "${WHEELS:-./.whl}"
else
    OUT="${OUT:-./benchmarks/results}"
    install_wheels "${WHEELS:-./wheels}" "${VENV:-/tmp/recurrax-tpu-venv}" "${PYTHON:-python3.11}" \
        "jax[tpu]" flax optax chex orbax-checkpoint numpy tqdm matplotlib equinox dm-haiku keras
fi
if [ "$SMOKE" = 0 ]; then
    COMMON=(--repeats 5)
    KERNELS_S="${KERNELS_S:-70}" PEERS_S="${PEERS_S:-230}" LEVERS_S="${LEVERS_S:-40}"
    LINEAR_S="${LINEAR_S:-70}" SCALING_S="${SCALING_S:-40}"
fi
# recurrax and the benchmarks run from this checkout; nothing of them is installed.
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

steps_begin "$OUT/tpu_run.txt"

# The backend (a TPU, except in the smoke run) and the TPU generation, first in the summary.
"$PY" - "$SMOKE" "$SUMMARY" <<'PY'
import sys
import jax
smoke, summary = sys.argv[1] == "1", sys.argv[2]
print("jax", jax.__version__, "devices:", jax.devices())
if not smoke:
    assert jax.default_backend() == "tpu", "JAX found no TPU: check the jax[tpu] wheels (jaxlib, libtpu)"
line = f"device: {jax.devices()[0].device_kind} ({jax.device_count()} devices, backend {jax.default_backend()})"
print(line)
with open(summary, "a") as out:
    out.write(line + "\n")
PY

if [ "$SMOKE" = 1 ]; then
    run tpu_kernels "${SMOKE_S:-180}" benchmarks.kernel_check --smoke --kernel-variant tpu --kernels pallas \
        --cells lstm,gru,min_gru,lru --out "$OUT/tpu_kernels"
    KERNELS=$(usable_kernels "$OUT/tpu_kernels.json" lstm,gru)
    LINEAR_KERNELS=$(usable_kernels "$OUT/tpu_kernels.json" min_gru,lru)
    echo "kernels timed: ${KERNELS:-none}; for the linear cells: ${LINEAR_KERNELS:-none}" | tee -a "$SUMMARY"
    # One process for the suites (each process would spend most of a smoke run importing every peer), so one
    # --kernels for all: the kernel where the check found it right for both cell families.
    BOTH=$([ "$KERNELS" = pallas ] && [ "$LINEAR_KERNELS" = pallas ] && echo pallas || true)
    run tpu_smoke "${SMOKE_S:-180}" benchmarks.run "${COMMON[@]}" --suites peers,levers,linear,scaling \
        --cells lstm,gru --modes train --kernels "$BOTH" --out "$OUT/tpu_smoke"
else
    run tpu_kernels "$KERNELS_S" benchmarks.kernel_check --kernels pallas --cells lstm,gru,min_gru,lru \
        --out "$OUT/tpu_kernels"
    KERNELS=$(usable_kernels "$OUT/tpu_kernels.json" lstm,gru)
    LINEAR_KERNELS=$(usable_kernels "$OUT/tpu_kernels.json" min_gru,lru)
    echo "kernels timed: ${KERNELS:-none}; for the linear cells: ${LINEAR_KERNELS:-none}" | tee -a "$SUMMARY"
    # Every JAX peer: the PyTorch peer is not part of a TPU run (benchmarks.run would record it as not installed).
    JAX_PEERS=$("$PY" -c 'from benchmarks.peers import PEERS; print(",".join(p for p in PEERS if p != "torch_peer"))')
    run tpu "$PEERS_S" benchmarks.run "${COMMON[@]}" --suites peers --peers "$JAX_PEERS" --kernels "$KERNELS" \
        --out "$OUT/tpu"
    run tpu_levers "$LEVERS_S" benchmarks.run "${COMMON[@]}" --suites levers --modes train --kernels "$KERNELS" \
        --out "$OUT/tpu_levers"
    run tpu_linear "$LINEAR_S" benchmarks.run "${COMMON[@]}" --suites linear --linear-cells min_gru,min_gru_log \
        --linear-steps 1024,4096 --kernels "$LINEAR_KERNELS" --out "$OUT/tpu_linear"
    run tpu_scaling "$SCALING_S" benchmarks.run "${COMMON[@]}" --suites scaling --out "$OUT/tpu_scaling"
fi

steps_end
