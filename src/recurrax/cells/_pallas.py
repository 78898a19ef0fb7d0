"""What the Pallas recurrence kernels share: layouts, padding, the ``pallas_call`` over batch blocks.

The kernels of the cells whose step is gates from one matmul (the LSTM, GRU,
Elman RNN and any :class:`~recurrax.cells.MatmulGatedCell`,
``cells/_pallas_gated.py``) run the whole sequence in one kernel: the loop
over time is inside the kernel, the recurrent weights are read by the kernel at every step without a
launch per step, and a second kernel runs the backward loop (a
:func:`jax.custom_vjp`). The input projection stays outside (one large XLA
matmul before the kernel), and so do the weight gradients (one large matmul
after the backward kernel, as in ``cells/_fused.py``): the kernels carry only
what must be sequential.

Layout inside the kernels is **gate-major**: gate pre-activations are
``[T, G, B, H]`` and the recurrent weights ``[G, H, H]``, so that a kernel
reads each gate with a ref index, never by slicing a value (which the Triton
lowering does not support). The state is handled in column tiles
(:func:`hidden_tiles`): each ``dot`` multiplies one tile of the state by one
``[tile, tile]`` block of one gate's weights, and the forward kernel keeps the
state in its output, reading step t-1's row back at step t (after a
:func:`barrier`), so no whole weight matrix has to fit a thread block.
Batch and hidden sizes are padded to powers of two (at least
:data:`GPU_MIN_BLOCK` on a GPU): padded units have zero weights and a zero
initial state and stay zero, padded examples are invalid at every step.

Backends: on a GPU ``pallas_call`` lowers through Triton; elsewhere the kernels
run in Pallas's interpret mode (``interpret=True``: the same kernel body as
XLA operations, slow, for tests). **Unmeasured:** on the one GPU run so far
(an H200) Triton refused the LSTM and GRU kernels at H = 128 for want of shared memory
(see :func:`call`); ``benchmarks/README.md`` says what is and is not measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from recurrax._options import ScanOptions
from recurrax._types import Array

# Triton's dot needs every dimension >= 16; blocks are powers of two.
GPU_MIN_BLOCK = 16
# Examples per program on a GPU (the grid runs one program per block of examples).
GPU_BATCH_BLOCK = 16
# Columns per tile of the state on a GPU, at most: each Triton dot multiplies a [block, tile] piece of
# the state by a [tile, tile] block of one gate's weights, staged in shared memory, so no hidden size
# needs one gate's whole [Hp, Hp] block (256 KiB at 256: more than an H200 thread block's 227 KiB).
GPU_HIDDEN_TILE = 128
# Shared memory a thread block may have (the opt-in maximum), by CUDA compute capability (CUDA C++
# Programming Guide, technical specifications); Triton reported 232,448 available on the H200.
GPU_SHARED_MEMORY_BYTES = {
    "7.0": 96 * 2**10,
    "7.5": 64 * 2**10,
    "8.0": 163 * 2**10,
    "8.6": 99 * 2**10,
    "8.7": 163 * 2**10,
    "8.9": 99 * 2**10,
    "9.0": 227 * 2**10,
    "10.0": 227 * 2**10,
    "12.0": 99 * 2**10,
}
# What a kernel took besides the weight blocks on the first H200 run (see `call`): 40-56 KiB.
GPU_SHARED_MEMORY_RESERVE = 56 * 2**10


#: Which kernels run off a GPU and a TPU (interpreted, for tests): ``"triton"`` (Pallas's generic interpret
#: mode) or ``"tpu"`` (Pallas's TPU interpret mode, which simulates VMEM blocks, scratch and the sequential grid).
OFF_DEVICE_VARIANT = "triton"


def kernel_variant() -> str:
    """Which kernels run: ``"tpu"`` (Mosaic) on a TPU, ``"triton"`` on a GPU, elsewhere :data:`OFF_DEVICE_VARIANT`.

    The one switch for every Pallas kernel here (the gates-from-a-matmul and
    the linear recurrences'); off a device the chosen kernels run interpreted.
    """
    backend = jax.default_backend()
    if backend == "tpu":
        return "tpu"
    return "triton" if backend == "gpu" else OFF_DEVICE_VARIANT


def tpu_interpret() -> Any:
    """The TPU kernels' ``interpret=``: compiled by Mosaic on a TPU, else Pallas's TPU interpreter."""
    if jax.default_backend() == "tpu":
        return False
    from jax.experimental.pallas import tpu

    return tpu.InterpretParams()


#: A grid dimension's semantics for Mosaic TPU.
DimensionSemantics = Literal["parallel", "arbitrary"]


def tpu_dimension_semantics(*semantics: DimensionSemantics) -> tuple[DimensionSemantics, ...] | None:
    """The TPU kernels' ``dimension_semantics``: as given for Mosaic, None in Pallas's TPU interpreter.

    Under :func:`jax.vmap` Pallas puts a grid dimension in front. Mosaic's
    lowering accounts for it; the interpreter (jax 0.10 to 0.12) zips the grid
    with the semantics as given and fails on the length. None runs every
    dimension in order there, which the semantics allow.
    """
    return semantics if tpu_interpret() is False else None


def interpret_mode() -> bool:
    """Whether the kernels run interpreted: on every backend but a GPU (the one they were written for)."""
    return jax.default_backend() != "gpu"


def unsupported(leaves: Sequence[Any], options: ScanOptions) -> str | None:
    """Why a Pallas kernel cannot run a call on these arrays with these options (None: it can).

    The kernels are written for float32, and store every step's gates for the
    backward kernel (no ``remat``).
    """
    if options.remat:
        return "remat=True (the kernel stores every step's gates)"
    missing = backend_missing()
    if missing is not None:
        return missing
    for a in leaves:
        if not hasattr(a, "dtype"):
            return "inputs, parameters and carry must be arrays"
        if jnp.dtype(a.dtype) != jnp.dtype(jnp.float32):
            return f"an array of dtype {jnp.dtype(a.dtype)} (the Pallas kernels run float32)"
    return None


def backend_missing() -> str | None:
    """Why this jax cannot compile the kernels for this GPU (None: it can, or they do not run on a GPU here).

    jax 0.12 deprecates Pallas's Triton backend, which the GPU kernels are
    written for: once a jax no longer has it, ``kernel="pallas"`` on a GPU is
    declined with this reason (the XLA path runs) rather than failing to import.
    """
    if kernel_variant() != "triton" or interpret_mode():
        return None
    try:
        _pallas_triton()
    except ImportError as error:
        return f"this jax has no Pallas Triton backend to compile the kernels for a GPU ({error})"
    return None


def padded_size(n: int) -> int:
    """``n`` rounded up to a power of two (at least :data:`GPU_MIN_BLOCK` when compiled for a GPU)."""
    size = 1 << max(n - 1, 0).bit_length()
    return size if interpret_mode() else max(size, GPU_MIN_BLOCK)


def gpu_shared_memory() -> int:
    """Shared memory per thread block on this GPU, in bytes (:data:`GPU_SHARED_MEMORY_BYTES`).

    Off a GPU (the tests lower the kernels for one): the H200's, the GPU they
    were first run on. An unknown compute capability: 99 KiB (``"8.6"``'s).
    """
    if jax.default_backend() != "gpu":
        return GPU_SHARED_MEMORY_BYTES["9.0"]
    return GPU_SHARED_MEMORY_BYTES.get(_gpu_capability(), GPU_SHARED_MEMORY_BYTES["8.6"])


def _gpu_capability() -> str:
    """The first device's CUDA compute capability (``"9.0"``), or ``""`` where it has none."""
    return str(getattr(jax.devices()[0], "compute_capability", ""))


def describe() -> str:
    """What ``kernel="pallas"`` runs on this backend, in one line (``recurrax doctor`` prints it)."""
    variant = kernel_variant()
    if variant == "tpu":
        return "Mosaic TPU kernels, " + ("compiled" if tpu_interpret() is False else "in Pallas's TPU interpreter")
    if interpret_mode():
        return "Triton kernels, interpreted (no GPU): for tests, not speed"
    missing = backend_missing()
    if missing is not None:
        return f"declined: {missing}"
    memory = gpu_shared_memory()
    tiles = ", ".join(f"{gpu_hidden_tile(g)} ({name})" for g, name in ((4, "LSTM"), (3, "GRU"), (1, "Elman RNN")))
    return (
        f"Triton kernels, compute capability {_gpu_capability() or 'unknown'}, "
        f"{memory // 2**10} KiB shared memory per block: state tiles {tiles}"
    )


def gpu_hidden_tile(num_gates: int, shared_memory: int | None = None) -> int:
    """The widest tile (a power of two, at most :data:`GPU_HIDDEN_TILE`) whose G weight blocks fit.

    Each of the G gates' ``[tile, tile]`` float32 blocks counted twice (as
    Triton held them on the first H200 run), plus
    :data:`GPU_SHARED_MEMORY_RESERVE`, within ``shared_memory`` bytes
    (default: :func:`gpu_shared_memory`). On an H200: 128 for the Elman RNN,
    64 for the GRU and the LSTM; on an A100 64 and 32; on a T4 32 and 16.
    """
    budget = (gpu_shared_memory() if shared_memory is None else shared_memory) - GPU_SHARED_MEMORY_RESERVE
    tile = GPU_HIDDEN_TILE
    while tile > GPU_MIN_BLOCK and 2 * num_gates * tile * tile * 4 > budget:
        tile //= 2
    return tile


def hidden_tiles(padded_hidden: int, num_gates: int) -> list[slice]:
    """The column tiles the kernels split a state ``[B, Hp]`` into for their matmuls (G gates each).

    On a GPU tiles of :func:`gpu_hidden_tile`, so that each Triton ``dot``
    stages at most a ``[tile, tile]`` weight block in shared memory and one
    tile's G blocks fit together; interpreted, two tiles (one when ``Hp = 1``),
    so the tests run the tiled code.
    """
    if interpret_mode():
        tile = max(padded_hidden // 2, 1)
    else:
        tile = min(padded_hidden, gpu_hidden_tile(num_gates))
    return [slice(start, start + tile) for start in range(0, padded_hidden, tile)]


def _pallas() -> Any:
    # Imported on first use: Pallas and its Triton lowering add ~0.5 s to every `import recurrax`
    # (measured with -X importtime), paid by each process of a suite that never runs a kernel.
    from jax.experimental import pallas

    return pallas


def _pallas_triton() -> Any:
    from jax.experimental.pallas import triton

    return triton


def barrier() -> None:
    """Makes one step's writes to global memory visible to every thread of the program (a no-op interpreted)."""
    if not interpret_mode():
        _pallas_triton().debug_barrier()


def batch_block(padded_batch: int) -> int:
    """Examples per program: all of them when interpreted (one program), else :data:`GPU_BATCH_BLOCK`."""
    return padded_batch if interpret_mode() else min(padded_batch, GPU_BATCH_BLOCK)


def gates_to_kernel(a: Array, num_gates: int, batch: int, hidden: int) -> Array:
    """``[T, B, G·H]`` → gate-major, padded ``[T, G, Bp, Hp]``."""
    t, b, gh = a.shape
    h = gh // num_gates
    a = jnp.moveaxis(a.reshape(t, b, num_gates, h), 2, 1)
    return jnp.pad(a, ((0, 0), (0, 0), (0, batch - b), (0, hidden - h)))


def weights_to_kernel(w: Array, num_gates: int, hidden: int) -> Array:
    """A recurrent kernel ``[H, G·H]`` → gate-major, padded ``[G, Hp, Hp]``."""
    h = w.shape[0]
    w = jnp.moveaxis(w.reshape(h, num_gates, h), 1, 0)
    return jnp.pad(w, ((0, 0), (0, hidden - h), (0, hidden - h)))


def pad_state(a: Array, batch: int, hidden: int) -> Array:
    """``[B, H]`` → ``[Bp, Hp]`` with zeros."""
    return jnp.pad(a, ((0, batch - a.shape[0]), (0, hidden - a.shape[1])))


def pad_mask(mask: Array | None, num_steps: int, batch: int, *, default: bool) -> Array:
    """A ``[T, B]`` step mask as float32 ``[T, Bp]`` (padded examples: False); ``default`` where absent."""
    if mask is None:
        return jnp.full((num_steps, batch), float(default), jnp.float32)
    mask = mask.astype(jnp.float32)
    return jnp.pad(mask, ((0, 0), (0, batch - mask.shape[1])))


def _spec(shape: tuple[int, ...], batch_axis: int | None, block: int) -> Any:
    block_shape = tuple(block if i == batch_axis else n for i, n in enumerate(shape))

    def index_map(b: Any) -> tuple[Any, ...]:
        return tuple(b if i == batch_axis else 0 for i in range(len(shape)))

    return _pallas().BlockSpec(block_shape, index_map)


def call(
    kernel: Callable[..., None],
    inputs: Sequence[tuple[Array, int | None]],
    outputs: Sequence[tuple[tuple[int, ...], int | None]],
    batch: int,
    name: str,
) -> list[Array]:
    """Runs ``kernel`` over blocks of examples: one program per :func:`batch_block` examples.

    ``inputs`` are ``(array, batch axis or None)``; ``outputs`` are
    ``(shape, batch axis or None)``, all float32.
    """
    block = batch_block(batch)
    in_specs = [_spec(a.shape, axis, block) for a, axis in inputs]
    out_specs = [_spec(shape, axis, block) for shape, axis in outputs]
    out_shape = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape, _ in outputs]
    run = _pallas().pallas_call(
        kernel,
        out_shape=out_shape,
        grid=(math.ceil(batch / block),),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=interpret_mode(),
        name=name,
        # Triton, not Mosaic GPU (jax's default GPU lowering since 0.10): Mosaic GPU copies each
        # block into shared memory, and a block here holds all T steps; Triton reads ref[t] from
        # global memory at each step. The first H200 run (benchmarks/results/gpu_kernels.json) asked
        # for 565,376 bytes of shared memory for the LSTM at H = 128 (one 128-wide tile) and 450,560
        # for the GRU, of 232,448: the G gates' [128, 128] float32 weight blocks twice over
        # (G·64 KiB·2) plus ~40-56 KiB. Even once over (num_stages=1, no pipelining) the LSTM's four
        # blocks are 256 KiB, so the tile also narrows with G (gpu_hidden_tile: 64 for the LSTM and
        # GRU on an H200, 2·G·16 KiB; narrower on GPUs with less). Both are inferred from those two
        # numbers, not yet seen on a GPU.
        compiler_params=None if interpret_mode() else _pallas_triton().CompilerParams(num_warps=4, num_stages=1),
    )
    result: list[Array] = run(*(a for a, _ in inputs))
    return result


def row(mask_ref: Any, t: Any) -> Array:
    """The step mask at step ``t`` as a ``[B, 1]`` boolean, to select whole state rows."""
    value: Array = mask_ref[t]
    return value[:, None] > 0


def starts(hs: Array, h0: Array, resets: Array) -> Array:
    """The state each step starts from: the previous step's, ``h0`` at step 0 and at resets (``[T, B, H]``)."""
    prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    return jnp.where(resets[..., None] > 0, h0[None], prev)
