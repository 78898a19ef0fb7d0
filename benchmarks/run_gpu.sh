#!/usr/bin/env bash
# The GPU benchmark run: recurrax against cuDNN (PyTorch) and every JAX peer, with recurrax's kernels as levers.
#
#   bash benchmarks/run_gpu.sh          # a fresh CUDA machine: install from $WHEELS, run, write $OUT (caps: < 8 min)
#   bash benchmarks/run_gpu.sh --image  # a machine whose python3 already has jax[cuda], flax, optax, chex, orbax,
#                                       # equinox and torch (a CUDA image): only the missing peers come from $WHEELS
#                                       # (default ./.whl: dm-haiku, jmp, keras, namex, optree), installed --no-deps
#   bash benchmarks/run_gpu.sh --smoke  # here, on CPU, with the current Python: the kernel check (GRU), then every
#                                       # suite once on tiny shapes, recurrax and the floor only, in one process
#                                       # (~25 CPU-s; each step capped at SMOKE_S, default 180 s, for a loaded machine)
#
# What it runs, each step a process of its own under its own time cap (SIGINT: what was measured is written,
# and the JSON's meta.interrupted_in names the suite that was cut), in the order that matters:
#   0. kernels → $OUT/gpu_kernels.json: are kernel="pallas" and "cudnn" right here (benchmarks/kernel_check.py)?
#   1. peers   → $OUT/gpu.json, gpu.md: the four shapes, LSTM and GRU, train and forward, every peer, plus
#               recurrax with kernel="pallas" (both cells) and kernel="cudnn" (LSTM): the verdict table.
#   2. levers  → $OUT/gpu_levers.*: recurrax's own variants at (64,256,128,256): hoisting, unroll, fused, remat, kernels.
#   3. linear  → $OUT/gpu_linear.*: sequential against parallel scan of the linear cells, T = 1024 and 4096, and
#               the parallel path with kernel="pallas" (the linear scan's Pallas kernel).
#   4. scaling → $OUT/gpu_scaling.*: an LSTM training step for T = 64 … 16384.
#   5. precision → $OUT/gpu_precision/: each mixed-precision policy's train step and forward (benchmarks/precision_cpu.py).
#   6. distributed → $OUT/distributed_gpu.*: the distributed suite's data-parallel/FSDP step on the one GPU.
# Step 1 and 2 time a kernel only where step 0 found it right forwards (outputs and gradients within 1e-3 of the
# step loop; the suites time forward calls) and compiled in under KERNEL_COMPILE_S seconds (default 20) for the
# LSTM and GRU; step 3 likewise for the linear cells' kernel (minGRU, LRU); the summary says which were left out
# and why, and which failed reversed.
# A summary of what finished and what was cut is printed at the end and written to $OUT/gpu_run.txt.
#
# TAR_TO=FILE: after every step, a gzipped tar of $OUT is written to FILE (for callers that fetch back a few
# files only, or that may be cut off before the end).
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
# Time: installing takes 1-2 minutes from $WHEELS (seconds with --image); the steps' caps (seconds) are
# KERNELS_S, PEERS_S, LEVERS_S, LINEAR_S, SCALING_S, PRECISION_S, DISTRIBUTED_S (defaults 50, 275, 35, 50, 25,
# 25, 20, each including its process's start-up: 8.0 minutes). On the H200 of 2026-12-04 (caps 40, 245, 40, 55,
# 35, 35, 30) peers measured 14 of its 16 blocks in 236 s, levers finished in 30 s, precision in 21, distributed
# in 10; the kernel check (Triton failing to compile), linear and scaling were cut.
set -euo pipefail

# The argument, the installs, run, usable_kernels and the summary: shared with run_tpu.sh.
source "$(dirname "${BASH_SOURCE[0]}")/_steps.sh"
parse_mode run_gpu.sh "$@"

export KERAS_BACKEND=jax
# JAX must not take 75% of the GPU up front: PyTorch runs in the same process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONUNBUFFERED=1

if [ "$SMOKE" = 1 ]; then
    smoke_setup gpu  # no GPU required
    COMMON=(--smoke --peers floor,recurrax_peer)
elif [ "$IMAGE" = 1 ]; then
    OUT="${OUT:-./benchmarks/results}"
    install_image_wheels "${WHEELS:-./.whl}"
else
    OUT="${OUT:-./benchmarks/results}"
    install_wheels "${WHEELS:-./wheels}" "${VENV:-/tmp/recurrax-gpu-venv}" "${PYTHON:-python3.12}" \
        "jax[cuda12]" flax optax chex orbax-checkpoint numpy tqdm matplotlib equinox dm-haiku keras torch
fi
if [ "$SMOKE" = 0 ]; then
    COMMON=(--repeats 5)
    KERNELS_S="${KERNELS_S:-50}" PEERS_S="${PEERS_S:-275}" LEVERS_S="${LEVERS_S:-35}"
    LINEAR_S="${LINEAR_S:-50}" SCALING_S="${SCALING_S:-25}" PRECISION_S="${PRECISION_S:-25}"
    DISTRIBUTED_S="${DISTRIBUTED_S:-20}"
fi
# recurrax and the benchmarks run from this checkout; nothing of them is installed.
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

if [ "$SMOKE" = 0 ]; then
    "$PY" - <<'PY'
import jax, torch
print("jax devices:", jax.devices(), "| torch cuda:", torch.cuda.is_available(), torch.version.cuda)
assert jax.default_backend() == "gpu", "JAX found no GPU: check the jax-cuda12 wheels and the driver"
PY
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi

steps_begin "$OUT/gpu_run.txt"

if [ "$SMOKE" = 1 ]; then
    run gpu_kernels "${SMOKE_S:-180}" benchmarks.kernel_check --smoke --cells gru,min_gru --out "$OUT/gpu_kernels"
    # One process for the suites: each suite's process would spend most of a smoke run importing every peer.
    run gpu_smoke "${SMOKE_S:-180}" benchmarks.run "${COMMON[@]}" --suites peers,levers,linear,scaling \
        --cells lstm,gru --modes train --kernels pallas,cudnn --out "$OUT/gpu_smoke"
else
    run gpu_kernels "$KERNELS_S" benchmarks.kernel_check --out "$OUT/gpu_kernels"
    KERNELS=$(usable_kernels "$OUT/gpu_kernels.json" lstm,gru)
    LINEAR_KERNELS=$(usable_kernels "$OUT/gpu_kernels.json" min_gru,lru)
    echo "kernels timed: ${KERNELS:-none}; for the linear cells: ${LINEAR_KERNELS:-none}" | tee -a "$SUMMARY"
    run gpu "$PEERS_S" benchmarks.run "${COMMON[@]}" --suites peers --kernels "$KERNELS" --out "$OUT/gpu"
    run gpu_levers "$LEVERS_S" benchmarks.run "${COMMON[@]}" --suites levers --modes train --kernels "$KERNELS" \
        --out "$OUT/gpu_levers"
    run gpu_linear "$LINEAR_S" benchmarks.run "${COMMON[@]}" --suites linear --linear-cells min_gru,min_gru_log \
        --linear-steps 1024,4096 --kernels "$LINEAR_KERNELS" --out "$OUT/gpu_linear"
    run gpu_scaling "$SCALING_S" benchmarks.run "${COMMON[@]}" --suites scaling --out "$OUT/gpu_scaling"
    run gpu_precision "$PRECISION_S" benchmarks.precision_cpu --rounds 3 --out "$OUT/gpu_precision"
    run distributed_gpu "$DISTRIBUTED_S" benchmarks.distributed --devices 1 --batch-size 256 --hidden 256 \
        --seq-len 128 --out "$OUT/distributed_gpu"
fi

steps_end
