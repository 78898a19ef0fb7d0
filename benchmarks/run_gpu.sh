#!/usr/bin/env bash
# Runs the recurrax benchmark suite on a fresh CUDA machine and writes $OUT/gpu.json and $OUT/gpu.md.
#
# Assumes only: Linux x86_64, an NVIDIA driver for CUDA 12, python3.12, this repository as the
# working directory, and a folder of wheels ($WHEELS, default ./wheels) — nothing is downloaded.
# The wheel folder must hold, for cp312 / manylinux x86_64, with all their dependencies:
#   jax==0.10.2 jaxlib==0.10.2 jax-cuda12-plugin==0.10.2 jax-cuda12-pjrt==0.10.2   (= "jax[cuda12]")
#     and the NVIDIA CUDA 12 wheels that jax[cuda12] pulls: nvidia-cublas-cu12, nvidia-cuda-cupti-cu12,
#     nvidia-cuda-nvcc-cu12, nvidia-cuda-nvrtc-cu12, nvidia-cuda-runtime-cu12, nvidia-cudnn-cu12,
#     nvidia-cufft-cu12, nvidia-cusolver-cu12, nvidia-cusparse-cu12, nvidia-nccl-cu12, nvidia-nvjitlink-cu12
#   flax==0.12.8 optax chex orbax-checkpoint numpy tqdm matplotlib   (recurrax's own dependencies)
#   equinox dm-haiku keras                                            (the JAX peers)
#   torch==2.13.0 (a CUDA 12 build, e.g. +cu126, and its nvidia-* wheels)  (the PyTorch peer)
# One way to fill it, on a machine with internet and the same Python:
#   pip download -d wheels "jax[cuda12]==0.10.2" flax==0.12.8 optax chex orbax-checkpoint numpy tqdm \
#       matplotlib equinox dm-haiku keras
#   pip download -d wheels torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126
#
# Time: installing takes 1-2 minutes; the suites are capped at $BENCH_SECONDS (default 300 s) and
# write their results after every block, so a run cut short still leaves what it measured.
set -euo pipefail

WHEELS="${WHEELS:-./wheels}"
OUT="${OUT:-./benchmarks/results}"
BENCH_SECONDS="${BENCH_SECONDS:-300}"
VENV="${VENV:-/tmp/recurrax-gpu-venv}"
PYTHON="${PYTHON:-python3.12}"

mkdir -p "$OUT"
PACKAGES=("jax[cuda12]" flax optax chex orbax-checkpoint numpy tqdm matplotlib equinox dm-haiku keras torch)
if [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    PY="$VENV/bin/python"
    "$PY" -m pip install --no-index --find-links "$WHEELS" --quiet "${PACKAGES[@]}"
else
    # No venv module (Debian's python3.12 without python3.12-venv): install into a folder instead.
    rm -rf "$VENV"
    PY="$PYTHON"
    "$PY" -m pip install --no-index --find-links "$WHEELS" --quiet --target "$VENV/site" "${PACKAGES[@]}"
    export PYTHONPATH="$VENV/site"
fi
# recurrax and the benchmarks run from this checkout; nothing of them is installed.
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"

export KERAS_BACKEND=jax
# JAX must not take 75% of the GPU up front: PyTorch runs in the same process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

"$PY" - <<'PY'
import jax, torch
print("jax devices:", jax.devices(), "| torch cuda:", torch.cuda.is_available(), torch.version.cuda)
assert jax.default_backend() == "gpu", "JAX found no GPU: check the jax-cuda12 wheels and the driver"
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

# Peers first (the comparison that matters), then the linear recurrences, scaling and compile time.
# The levers suite (recurrax's own variants: hoisting, unroll, fused, remat) comes last: it may be cut by the cap.
timeout --signal=INT "$BENCH_SECONDS" "$PY" -m benchmarks.run \
    --suites peers,linear,scaling,compile,levers --repeats 5 --out "$OUT/gpu" 2>&1 | tee "$OUT/gpu.log" || {
    status=$?
    echo "benchmarks stopped with status $status (124 or 130: the time cap); partial results are in $OUT/gpu.json"
}
ls -l "$OUT"
