"""The linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` as Pallas kernels for a TPU (Mosaic): time in chunks.

The same recurrence, masks, complex parts and gradients as the Triton kernels
of ``cells/_pallas_linear.py`` (which owns the API, the padding of the masks and
the :func:`jax.custom_vjp`, and chooses this module on a TPU), laid out for
Mosaic TPU. Mosaic copies every block into VMEM before a grid step runs, so a
block cannot hold a whole long sequence; the last two dims of a block must be
multiples of ``(8, 128)`` (sublanes, lanes); and the grid runs in order on a
core. So the grid is ``(state tiles, time chunks)``:

- ``a``, ``b`` and ``h`` are blocked ``[chunk, B_tile, H_tile]``: ``B`` padded to
  a multiple of 8, ``H`` to a multiple of 128 (padded units have
  ``a = b = h0 = 0`` and stay zero; padded examples are invalid);
- the state tiles are ``"parallel"`` (independent: a megacore may split them),
  the time chunks ``"arbitrary"`` (in order), and the state is carried from one
  chunk to the next in a VMEM scratch buffer, set to ``h0`` at the first chunk;
- the backward kernel walks the chunks in reverse (its index maps count them
  down) and carries the cotangent in scratch, ``h0``'s gradient accumulating
  in its output block; the state before a chunk's first step, which lies in
  the chunk before it, comes in as a one-step block of ``h`` (``h0`` at the
  first chunk);
- a last chunk shorter than :data:`TPU_CHUNK` runs only its steps (its loop
  has its own static length; the block's rows past ``T`` are never read, and
  Pallas drops their writes);
- the masks come in as ``[T, B, 1]``, so that a step's mask is a ``[B_tile, 1]``
  column broadcast across lanes, not a row of lanes to transpose.

**Unmeasured:** these kernels have never run on a TPU, only in Pallas's TPU
interpret mode on CPU, and lowered (not compiled) for a TPU
(``tests/cells/test_pallas_linear_tpu.py``); the tile and chunk sizes below
are arithmetic, not measurements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from recurrax._types import Array
from recurrax.cells import _pallas
from recurrax.cells._linear_step import Parts, advance, retreat

SUBLANES, LANES = 8, 128  # a TPU vreg is [8, 128] 32-bit values; a block's last two dims are multiples
# Examples and state units per grid step (at most; tiles divide the padded sizes): [8, 512] is four vregs
# per part of the state, held in registers through a chunk's steps.
TPU_BATCH_TILE = 8
TPU_STATE_TILE = 512
# Steps per time chunk. VMEM arithmetic, float32: a [32, 8, 512] block is 512 KiB, and Pallas double-buffers
# every block (the next chunk's copy overlaps this one's steps). The backward kernel holds the most: five
# sequences (a, h, ∂h in; ∂a, ∂b out) of n parts (1 real, 2 complex), 5·n·2·512 KiB = 5 MiB (10 MiB complex);
# the two masks, whose [32, 8, 1] blocks pad the lane dim to 128 (128 KiB a buffer), 512 KiB; the [8, 512]
# state blocks and scratch (16 KiB each; h0, ∂h0, the step before the chunk, double-buffered, and two
# scratch buffers, per part) 256 KiB complex: ~10.8 MiB complex, ~5.6 MiB real, the forward kernel (three
# sequences) less. Under 16 MiB, the smallest default scoped-VMEM limit we have read of (a TPU's VMEM is
# 16-128 MiB). Not measured on a TPU: a longer chunk or a wider tile may run faster where VMEM allows, and a
# batch under 8 leaves sublanes idle.
TPU_CHUNK = 32
# Steps of a chunk's loop unrolled together (their loads do not depend on the state).
TPU_UNROLL = 8


def padded_sizes(batch: int, hidden: int) -> tuple[int, int]:
    """``(examples, units)`` the TPU kernels run ``[B, H]`` padded to: multiples of 8 and 128."""
    return _round_up(batch, SUBLANES), _round_up(hidden, LANES)


def _round_up(n: int, unit: int) -> int:
    return max(math.ceil(n / unit), 1) * unit


def _tile(padded: int, unit: int, limit: int) -> int:
    """The largest multiple of ``unit`` that divides ``padded`` and is at most ``limit`` (at least ``unit``)."""
    return max(k * unit for k in range(1, max(limit // unit, 1) + 1) if padded % (k * unit) == 0)


class _Grid:
    """The grid ``(state tiles, time chunks)`` of one call, and the blocks its arrays are read and written in."""

    def __init__(self, num_steps: int, batch: int, hidden: int, *, backwards: bool) -> None:
        self.num_steps, self.backwards = num_steps, backwards
        self.batch_tile, self.state_tile = _tile(batch, SUBLANES, TPU_BATCH_TILE), _tile(hidden, LANES, TPU_STATE_TILE)
        self.chunk = min(TPU_CHUNK, num_steps)
        self.num_chunks = math.ceil(num_steps / self.chunk)
        self.state_tiles = (batch // self.batch_tile, hidden // self.state_tile)

    def chunk_index(self, c: Any) -> Any:
        """The chunk (in time order) that grid step ``c`` along time covers: counted down when backwards."""
        return self.num_chunks - 1 - c if self.backwards else c

    def spec(self, layout: str) -> Any:
        """A block spec: ``"tbh"`` a chunk of a sequence, ``"tb1"`` of a mask, ``"bh"`` a state, ``"prev"`` a step.

        ``"prev"`` is the step before the chunk's first (step 0 for the first chunk, where it goes unused).
        """
        bt, ht, chunk, nh = self.batch_tile, self.state_tile, self.chunk, self.state_tiles[1]
        blocks = {"tbh": (chunk, bt, ht), "tb1": (chunk, bt, 1), "bh": (bt, ht), "prev": (1, bt, ht)}

        def index_map(s: Any, c: Any) -> tuple[Any, ...]:
            # lax's division, not //: the indices are non-negative, and Python's floor rounding lowers to a
            # sign, which Mosaic lowers only for a known TPU generation.
            i, j, k = jax.lax.div(s, nh), jax.lax.rem(s, nh), self.chunk_index(c)
            if layout == "tb1":
                return k, i, 0
            if layout == "bh":
                return i, j
            # "prev": a block of one step, so its block index is the step.
            return (k, i, j) if layout == "tbh" else (jnp.maximum(k * chunk - 1, 0), i, j)

        return pl.BlockSpec(blocks[layout], index_map)

    def over_chunk(self, run: Callable[[int], None]) -> None:
        """Calls ``run(steps)`` with the number of steps of this grid step's chunk, a static int each."""
        last = self.num_steps - (self.num_chunks - 1) * self.chunk
        if last == self.chunk:
            run(self.chunk)
            return
        k = self.chunk_index(pl.program_id(1))
        pl.when(k < self.num_chunks - 1)(lambda: run(self.chunk))
        pl.when(k == self.num_chunks - 1)(lambda: run(last))

    def call(
        self,
        kernel: Callable[..., None],
        inputs: Sequence[tuple[Array, str]],
        outputs: Sequence[tuple[tuple[int, ...], str]],
        num_scratch: int,
        name: str,
    ) -> list[Array]:
        """Runs ``kernel`` over the grid; outputs and ``num_scratch`` ``[B_tile, H_tile]`` scratch buffers float32."""
        run = pl.pallas_call(
            kernel,
            out_shape=[jax.ShapeDtypeStruct(shape, jnp.float32) for shape, _ in outputs],
            grid=(math.prod(self.state_tiles), self.num_chunks),
            in_specs=[self.spec(layout) for _, layout in inputs],
            out_specs=[self.spec(layout) for _, layout in outputs],
            scratch_shapes=[pltpu.VMEM((self.batch_tile, self.state_tile), jnp.float32)] * num_scratch,
            compiler_params=pltpu.CompilerParams(
                dimension_semantics=_pallas.tpu_dimension_semantics("parallel", "arbitrary")
            ),
            interpret=_pallas.tpu_interpret(),
            name=name,
        )
        result: list[Array] = run(*(x for x, _ in inputs))
        return result


def _rows(mask_ref: Any, t: Any, shape: tuple[int, ...]) -> Array | None:
    """A step's mask as a ``[B_tile, H_tile]`` boolean, whole rows alike (None without the mask)."""
    # The float column is broadcast across lanes before the comparison, as flash attention broadcasts its
    # [block, 1] row maxima: booleans are compared and selected only in whole vregs.
    return None if mask_ref is None else jnp.broadcast_to(mask_ref[t], shape) > 0


def _masks(valid: Array | None, resets: Array | None) -> list[tuple[Array, str]]:
    # [T, Bp] → [T, Bp, 1]: the kernels select whole rows of the state, [B_tile, 1] broadcast over lanes.
    return [(m[:, :, None], "tb1") for m in (valid, resets) if m is not None]


def forward(a: Parts, b: Parts, h0: Parts, valid: Array | None, resets: Array | None) -> Parts:
    """``hs`` ``[T, Bp, Hp]`` (parts) from padded ``a``, ``b`` ``[T, Bp, Hp]``, ``h0[Bp, Hp]``, masks ``[T, Bp]``."""
    num_steps, batch, hidden = a[0].shape
    n = len(a)
    grid = _Grid(num_steps, batch, hidden, backwards=False)

    def kernel(*refs: Any) -> None:
        a_refs, b_refs, h0_refs = refs[:n], refs[n : 2 * n], refs[2 * n : 3 * n]
        masks = list(refs[3 * n : -2 * n])
        v_ref = masks.pop(0) if valid is not None else None
        r_ref = masks.pop(0) if resets is not None else None
        hs_refs, state_refs = refs[-2 * n : -n], refs[-n:]

        @pl.when(pl.program_id(1) == 0)
        def _() -> None:
            for s, r in zip(state_refs, h0_refs, strict=True):
                s[...] = r[...]

        def run(steps: int) -> None:
            start = tuple(r[...] for r in h0_refs)

            def body(t: Any, h: Parts) -> Parts:
                a_t, b_t = tuple(r[t] for r in a_refs), tuple(r[t] for r in b_refs)
                keep, reset = _rows(v_ref, t, start[0].shape), _rows(r_ref, t, start[0].shape)
                h = advance(h, a_t, b_t, keep, reset, start)
                for r, p in zip(hs_refs, h, strict=True):
                    r[t] = p
                return h

            h = jax.lax.fori_loop(0, steps, body, tuple(s[...] for s in state_refs), unroll=min(steps, TPU_UNROLL))
            for s, p in zip(state_refs, h, strict=True):
                s[...] = p

        grid.over_chunk(run)

    inputs = [(x, "tbh") for x in (*a, *b)] + [(x, "bh") for x in h0] + _masks(valid, resets)
    outputs = [((num_steps, batch, hidden), "tbh")] * n
    return tuple(grid.call(kernel, inputs, outputs, n, "recurrax_linear_forward_tpu"))


def backward(
    a: Parts, hs: Parts, h0: Parts, valid: Array | None, resets: Array | None, dhs: Parts
) -> tuple[Parts, Parts, Parts]:
    """``(∂a, ∂b, ∂h0)`` from the cotangents ``dhs`` of every step's state (padded parts, as :func:`forward`'s)."""
    num_steps, batch, hidden = a[0].shape
    n = len(a)
    grid = _Grid(num_steps, batch, hidden, backwards=True)

    def kernel(*refs: Any) -> None:
        a_refs, hs_refs, prev_refs, h0_refs, dhs_refs = (refs[k * n : (k + 1) * n] for k in range(5))
        masks = list(refs[5 * n : -5 * n])
        v_ref = masks.pop(0) if valid is not None else None
        r_ref = masks.pop(0) if resets is not None else None
        da_refs, db_refs, dh0_refs, g_refs, before_refs = (refs[len(refs) - (5 - k) * n :][:n] for k in range(5))
        c = pl.program_id(1)
        k = grid.chunk_index(c)

        # The state before the chunk's step 0: the previous chunk's last, h0 before the first chunk. Chosen by
        # pl.when into scratch (a branch on the grid index), not by a select on a scalar predicate.
        @pl.when(k > 0)
        def _() -> None:
            for r, prev in zip(before_refs, prev_refs, strict=True):
                r[...] = prev[0]

        @pl.when(k == 0)
        def _() -> None:
            for r, h0_ref in zip(before_refs, h0_refs, strict=True):
                r[...] = h0_ref[...]

        @pl.when(c == 0)
        def _() -> None:
            # g (scratch): the cotangent of the state after the chunk's last step; dh0 accumulates in its block.
            for r in (*g_refs, *dh0_refs):
                r[...] = jnp.zeros(r.shape, jnp.float32)

        def run(steps: int) -> None:
            start = tuple(r[...] for r in h0_refs)

            def step(t: Any, h_prev: Parts, carry: tuple[Parts, Parts]) -> tuple[Parts, Parts]:
                a_t, dh_t = tuple(r[t] for r in a_refs), tuple(r[t] for r in dhs_refs)
                keep, reset = _rows(v_ref, t, start[0].shape), _rows(r_ref, t, start[0].shape)
                da, db, g, dh0 = retreat(*carry, a_t, h_prev, dh_t, keep, reset, start)
                for refs_out, parts in ((da_refs, da), (db_refs, db)):
                    for r, p in zip(refs_out, parts, strict=True):
                        r[t] = p
                return g, dh0

            def body(i: Any, carry: tuple[Parts, Parts]) -> tuple[Parts, Parts]:
                t = steps - 1 - i  # down to step 1 of the chunk: the state before it is in this block
                return step(t, tuple(r[t - 1] for r in hs_refs), carry)

            carry = (tuple(r[...] for r in g_refs), tuple(r[...] for r in dh0_refs))
            if steps > 1:
                carry = jax.lax.fori_loop(0, steps - 1, body, carry, unroll=min(steps - 1, TPU_UNROLL))
            g, dh0 = step(0, tuple(r[...] for r in before_refs), carry)
            for r, p in zip((*g_refs, *dh0_refs), (*g, *dh0), strict=True):
                r[...] = p

        grid.over_chunk(run)

        @pl.when(k == 0)
        def _() -> None:
            for r, g in zip(dh0_refs, g_refs, strict=True):
                r[...] += g[...]  # what reaches the state before step 0 is h0's

    inputs = [(x, "tbh") for x in (*a, *hs)] + [(x, "prev") for x in hs] + [(x, "bh") for x in h0]
    inputs += [(x, "tbh") for x in dhs] + _masks(valid, resets)
    sequence, state = (num_steps, batch, hidden), (batch, hidden)
    outputs = [(sequence, "tbh")] * (2 * n) + [(state, "bh")] * n
    grads = grid.call(kernel, inputs, outputs, 2 * n, "recurrax_linear_backward_tpu")
    return tuple(grads[:n]), tuple(grads[n : 2 * n]), tuple(grads[2 * n :])
