"""Regularisation of recurrent cells as cell wrappers: recurrent (variational) dropout and zoneout.

A wrapper is itself a :class:`~recurrax.cells.Cell`, so the one scan engine
runs it unchanged (input projections are still hoisted out of the loop). Its
randomness lives in its carry, drawn once per sequence by
``initial_carry(batch_shape, key=key)``:

* :func:`recurrent_dropout` carries one dropout mask per example, so the mask
  is the same at every step of a sequence (Gal & Ghahramani, 2016);
* :func:`zoneout` carries one PRNG key per example and splits it at every
  step, so each step draws a fresh mask that depends on that example only.

Because the randomness is part of the carry it freezes past an example's
``lengths``, restarts with ``resets`` (a packed episode draws the same masks as
the same episode run on its own) and can be handed on across truncated-BPTT
chunks. A carry made without a key holds no randomness, and the wrapper then
acts as in evaluation: no dropout, and zoneout's expectation. With
``deterministic=True`` the wrapper always acts so.

Training code draws a fresh key for every batch::

    cell = zoneout(recurrent_dropout(lstm(64), 0.25), 0.1)
    ys, carry = scan(cell, params, xs, initial_carry=cell.initial_carry((batch,), key=key))

``recurrax.nn`` modules do this for you, from the ``"dropout"`` rng stream.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import numbers
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Cell, Internals
from recurrax._types import Array, Carry, Params, tree_flatten


class RecurrentDropoutCarry(NamedTuple):
    """Carry of :func:`recurrent_dropout`: the wrapped cell's carry and the example's mask.

    ``mask[*B, P]`` (``P`` the size of ``h``) holds ``0`` or ``1/(1-rate)``;
    all ones when no key was given or the wrapper is deterministic.
    """

    inner: Carry
    mask: Array


class ZoneoutCarry(NamedTuple):
    """Carry of :func:`zoneout`: the wrapped cell's carry and each example's PRNG key.

    ``key[*B, K]`` is raw ``uint32`` key data (``K = 2`` for the default
    threefry keys), so that the scan engine can select and add it like any
    other leaf. All zeros means "no key": the wrapper then uses the expectation.
    """

    inner: Carry
    key: Array


# ------------------------------------------------------------------ checks
def _check_cell(cell: Any, wrapper: str, *, mixes_own_carry: bool = False) -> None:
    """The wrappers act on the cell's recurrent state, which the cell must expose (``Cell.recurrent_state``).

    With ``mixes_own_carry`` (zoneout), a cell that overrides ``Cell.zoned_step`` passes too.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"{wrapper} wraps a recurrax Cell, got {type(cell).__name__}")
    if mixes_own_carry and type(cell).zoned_step is not Cell.zoned_step:
        return
    template = jax.eval_shape(lambda: cell.initial_carry(()))
    try:
        jax.eval_shape(cell.recurrent_state, template)
    except NotImplementedError as err:
        raise TypeError(f"{wrapper} cannot wrap {type(cell).__name__}: {err}") from None


def _check_rate(rate: Any, name: str, *, allow_one: bool) -> float:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(rate).__name__} {rate!r}")
    value = float(rate)
    ok = 0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


@functools.cache
def _key_data_shape(impl: str) -> tuple[int, ...]:
    del impl  # the cache key: the default PRNG implementation
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def _default_key_data_shape() -> tuple[int, ...]:
    # jax sets its flags on Config at run time; read() refuses this one (it has a context manager).
    return _key_data_shape(str(jax.config.jax_default_prng_impl))  # type: ignore[attr-defined]


# ------------------------------------------------------------------ base wrapper
@dataclasses.dataclass(frozen=True, kw_only=True)
class RegularizedCell(Cell):
    """A cell wrapped with training-time randomness that lives in its carry.

    The wrapper keeps the cell contract and adds:
      * ``initial_carry(batch_shape, dtype=None, *, key=None)`` — draws the randomness;
      * :meth:`wrap_carry` / :meth:`unwrap_carry` / :meth:`replace_base_carry`
        — convert between the wrapper's carry and the innermost cell's carry;
      * :meth:`with_deterministic` — the same wrapper(s) in train or eval mode.

    ``hidden_size`` and the dtypes are the wrapped cell's (the constructor
    functions fill them in).
    """

    cell: Cell
    deterministic: bool = False

    is_linear: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.cell, Cell):
            raise TypeError(f"cell must be a recurrax Cell, got {type(self.cell).__name__}")
        super().__post_init__()
        if self.hidden_size != self.cell.hidden_size:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must equal the wrapped cell's ({self.cell.hidden_size})"
            )
        if not isinstance(self.deterministic, bool):
            raise TypeError(f"deterministic must be a bool, got {self.deterministic!r}")

    # ------------------------------------------------------------ delegation
    @property
    def base_cell(self) -> Cell:
        """The innermost (unwrapped) cell."""
        return self.cell.base_cell if isinstance(self.cell, RegularizedCell) else self.cell

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def supports_input_projection(self) -> bool:  # type: ignore[override]
        return self.cell.supports_input_projection

    def init(self, key: Array, in_features: int) -> Params:
        return self.cell.init(key, in_features)

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self.cell.project_inputs(params, xs)

    def recurrent_state(self, carry: Carry) -> Array:
        return self.base_cell.recurrent_state(self.unwrap_carry(carry))

    # ------------------------------------------------------------ carries
    def initial_carry(
        self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None, *, key: Array | None = None
    ) -> Carry:
        """The zero state of the wrapped cell plus this sequence's randomness.

        Args:
          batch_shape: leading batch dims ``*B``.
          dtype: the state dtype (default: the cell's).
          key: a PRNG key; without one the carry holds no randomness and the
            wrapper acts as in evaluation.
        """
        return self.wrap_carry(self.base_cell.initial_carry(batch_shape, dtype), key=key)

    def random_initial_carry(self, batch_shape: tuple[int, ...], key: Array | None) -> Carry:
        return self.initial_carry(batch_shape, key=key)

    @abc.abstractmethod
    def wrap_carry(self, base_carry: Carry, *, key: Array | None = None) -> Carry:
        """The wrapper's carry around ``base_carry`` (the innermost cell's carry), with fresh randomness."""

    def unwrap_carry(self, carry: Carry) -> Carry:
        """The innermost cell's carry inside ``carry`` (any leading dims, e.g. stacked over time)."""
        inner = carry.inner
        return self.cell.unwrap_carry(inner) if isinstance(self.cell, RegularizedCell) else inner

    def replace_base_carry(self, carry: Carry, base_carry: Carry) -> Carry:
        """``carry`` with its innermost cell's carry replaced by ``base_carry``; randomness kept."""
        if isinstance(self.cell, RegularizedCell):
            return carry._replace(inner=self.cell.replace_base_carry(carry.inner, base_carry))
        return carry._replace(inner=base_carry)

    def with_deterministic(self, deterministic: bool) -> RegularizedCell:
        """This wrapper, and every wrapper inside it, in evaluation (True) or training (False) mode."""
        inner = self.cell.with_deterministic(deterministic) if isinstance(self.cell, RegularizedCell) else self.cell
        return dataclasses.replace(self, cell=inner, deterministic=deterministic)

    def _split_key(self, key: Array | None) -> tuple[Array | None, Array | None]:
        """(key for the wrapped wrapper, key for this one)."""
        if key is None or not isinstance(self.cell, RegularizedCell):
            return None, key
        inner_key, own_key = jax.random.split(key)
        return inner_key, own_key

    def _wrap_inner(self, base_carry: Carry, key: Array | None) -> Carry:
        if isinstance(self.cell, RegularizedCell):
            return self.cell.wrap_carry(base_carry, key=key)
        return base_carry


def start_regularized(
    cell: RegularizedCell,
    initial_carry: Carry | None,
    batch_shape: tuple[int, ...],
    *,
    deterministic: bool,
    key: Array | None,
) -> tuple[RegularizedCell, Carry]:
    """``cell`` in the given mode and its initial carry around ``initial_carry`` (a plain cell's, or zeros).

    What a layer does before running a regularised cell: the randomness is
    drawn from ``key`` (none in evaluation, or without a key).
    """
    cell = cell.with_deterministic(deterministic)
    base = initial_carry if initial_carry is not None else cell.base_cell.initial_carry(batch_shape)
    return cell, cell.wrap_carry(base, key=None if deterministic else key)


def _wrapper_fields(cell: Cell) -> dict[str, Any]:
    return {
        "hidden_size": cell.hidden_size,
        "dtype": cell.dtype,
        "param_dtype": cell.param_dtype,
        "carry_dtype": cell.carry_dtype,
    }


# ------------------------------------------------------------ recurrent dropout
@dataclasses.dataclass(frozen=True, kw_only=True)
class RecurrentDropout(RegularizedCell):
    """Variational (recurrent) dropout on the recurrent input ``h_{t-1}``; see :func:`recurrent_dropout`."""

    rate: float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_cell(self.cell, "recurrent_dropout")
        object.__setattr__(self, "rate", _check_rate(self.rate, "rate", allow_one=False))

    def wrap_carry(self, base_carry: Carry, *, key: Array | None = None) -> RecurrentDropoutCarry:
        h = self.cell.recurrent_state(base_carry)
        if key is None or self.deterministic or self.rate == 0.0:
            return RecurrentDropoutCarry(inner=base_carry, mask=jnp.ones_like(h))
        keep = 1.0 - self.rate
        kept = jax.random.bernoulli(key, keep, h.shape)
        mask = jnp.where(kept, 1.0 / keep, 0.0).astype(h.dtype)
        return RecurrentDropoutCarry(inner=base_carry, mask=mask)

    def step(self, params: Params, carry: RecurrentDropoutCarry, x: Array) -> tuple[RecurrentDropoutCarry, Array]:
        return self._dropped_step(params, carry, x, projected=False)

    def step_projected(
        self, params: Params, carry: RecurrentDropoutCarry, projected_x: Array
    ) -> tuple[RecurrentDropoutCarry, Array]:
        return self._dropped_step(params, carry, projected_x, projected=True)

    def recorded_step(
        self, params: Params, carry: RecurrentDropoutCarry, x: Array, *, projected: bool = False
    ) -> tuple[RecurrentDropoutCarry, Array, Internals]:
        """The wrapped cell's internals, from the step that reads the dropped state ``h ⊙ m``."""
        if self.deterministic:
            new_inner, y, internals = self.cell.recorded_step(params, carry.inner, x, projected=projected)
            return RecurrentDropoutCarry(new_inner, carry.mask), y, internals
        new, y = self._dropped_step(params, carry, x, projected=projected)
        # The wrapped cell records its step on the carry whose h is dropped: what its recurrent
        # weights read. A cell whose step_reading keeps the undropped h elsewhere (the GRU's z ⊙ h)
        # computes its gates from the dropped h all the same. XLA merges the repeated work.
        h = self.cell.recurrent_state(carry.inner)
        read = self.cell.replace_recurrent_state(carry.inner, h * carry.mask)
        _, _, internals = self.cell.recorded_step(params, read, x, projected=projected)
        return new, y, internals

    def _dropped_step(
        self, params: Params, carry: RecurrentDropoutCarry, x: Array, *, projected: bool
    ) -> tuple[RecurrentDropoutCarry, Array]:
        if self.deterministic:
            step = self.cell.step_projected if projected else self.cell.step
            new_inner, y = step(params, carry.inner, x)
        else:
            h = self.cell.recurrent_state(carry.inner)
            new_inner, y = self.cell.step_reading(params, carry.inner, x, h * carry.mask, projected=projected)
        return RecurrentDropoutCarry(new_inner, carry.mask), y


def recurrent_dropout(cell: Cell, rate: float, *, deterministic: bool = False) -> RecurrentDropout:
    """Wraps ``cell`` with variational dropout on its recurrent input (Gal & Ghahramani, 2016).

    In training, each example draws one mask ``m[*B, P]`` per sequence (kept with
    probability ``1 - rate``, scaled by ``1/(1 - rate)``) and every step sees
    ``h_{t-1} ⊙ m`` in place of ``h_{t-1}`` in its recurrent matmul::

        carry, y = cell.step(params, carry with h := h ⊙ m, x)   # LSTM: c is not dropped

    For a GRU, ``h' = (1 - z) ⊙ n + z ⊙ h`` keeps the undropped ``h`` (the
    dropout acts on the gates' inputs, as in Keras): each cell says how its
    step reads a dropped state (:meth:`~recurrax.Cell.step_reading`). One mask is shared by all
    gates, so the recurrent matmul stays one matmul. The mask is in the carry
    (:class:`RecurrentDropoutCarry`); draw it with
    ``initial_carry(batch_shape, key=key)``. With ``deterministic=True`` (or a
    carry made without a key) the wrapper is exactly ``cell``.

    Args:
      cell: a cell that exposes its recurrent state (:meth:`~recurrax.Cell.recurrent_state`:
        SimpleRNN, LSTM, GRU, IndRNN, or your own).
      rate: probability of dropping each unit of ``h``, in ``[0, 1)``.
      deterministic: evaluation mode (no dropout).

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.cells import recurrent_dropout
      >>> cell = recurrent_dropout(recurrax.lstm(8), 0.25)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> carry0 = cell.initial_carry((2,), key=jax.random.key(1))
      >>> ys, carry = recurrax.scan(cell, params, jnp.ones((2, 5, 3)), initial_carry=carry0)
      >>> ys.shape, carry.mask.shape
      ((2, 5, 8), (2, 8))

    References:
      Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in
      Recurrent Neural Networks", NeurIPS 2016.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"recurrent_dropout wraps a recurrax Cell, got {type(cell).__name__}")
    if isinstance(cell, RegularizedCell):
        raise TypeError(
            f"recurrent_dropout must wrap the plain cell, got a {type(cell).__name__} wrapper; "
            "put zoneout outside: zoneout(recurrent_dropout(cell, p), rate)"
        )
    return RecurrentDropout(cell=cell, rate=rate, deterministic=deterministic, **_wrapper_fields(cell))


# ------------------------------------------------------------------ zoneout
@dataclasses.dataclass(frozen=True, kw_only=True)
class Zoneout(RegularizedCell):
    """Zoneout on the carry (Krueger et al., 2017); see :func:`zoneout`."""

    rate: Any  # a float, or a pytree of floats with the base carry's structure (hashable: tuples)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_cell(self.cell, "zoneout", mixes_own_carry=True)
        template = jax.eval_shape(lambda: self.base_cell.initial_carry(()))
        object.__setattr__(self, "_template", template)
        if isinstance(self.rate, numbers.Real) and not isinstance(self.rate, bool):
            rates = jax.tree.map(lambda _: float(self.rate), template)
        else:
            try:
                rates = jax.tree.map(lambda r, _: r, self.rate, template)
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"rate must be a float or have the cell's carry structure {jax.tree.structure(template)}, "
                    f"got {self.rate!r}"
                ) from err
        checked = jax.tree.map(lambda r: _check_rate(r, "rate", allow_one=True), rates)
        object.__setattr__(self, "_rates", checked)

    @property
    def rates(self) -> Carry:
        """The zoneout probability of every leaf of the base carry (same structure)."""
        return self._rates  # type: ignore[attr-defined]

    def _all_rates(self) -> list[float]:
        return jax.tree.leaves(self.rates)

    def wrap_carry(self, base_carry: Carry, *, key: Array | None = None) -> ZoneoutCarry:
        inner_key, own_key = self._split_key(key)
        inner = self._wrap_inner(base_carry, inner_key)
        # The batch dims are what a carry leaf has beyond one example's leaf.
        leaf, example = jax.tree.leaves(base_carry)[0], jax.tree.leaves(self._template)[0]  # type: ignore[attr-defined]
        batch_shape = leaf.shape[: leaf.ndim - example.ndim]
        shape = (*batch_shape, *_default_key_data_shape())
        if own_key is None or self.deterministic or not any(self._all_rates()):
            return ZoneoutCarry(inner=inner, key=jnp.zeros(shape, jnp.uint32))
        return ZoneoutCarry(inner=inner, key=jax.random.bits(own_key, shape, jnp.uint32))

    def step(self, params: Params, carry: ZoneoutCarry, x: Array) -> tuple[ZoneoutCarry, Array]:
        return self._zoned_step(params, carry, x, projected=False)

    def step_projected(self, params: Params, carry: ZoneoutCarry, projected_x: Array) -> tuple[ZoneoutCarry, Array]:
        return self._zoned_step(params, carry, projected_x, projected=True)

    def recorded_step(
        self, params: Params, carry: ZoneoutCarry, x: Array, *, projected: bool = False
    ) -> tuple[ZoneoutCarry, Array, Internals]:
        """The wrapped cell's internals of its candidate step, before zoneout mixes the carry."""
        if not any(self._all_rates()):
            new_inner, y, internals = self.cell.recorded_step(params, carry.inner, x, projected=projected)
            return ZoneoutCarry(new_inner, carry.key), y, internals
        new, y = self._zoned_step(params, carry, x, projected=projected)
        # The candidate step again, for its internals (zoned_step keeps them to itself); XLA merges the repeat.
        _, _, internals = self.cell.recorded_step(params, carry.inner, x, projected=projected)
        return new, y, internals

    def _zoned_step(
        self, params: Params, carry: ZoneoutCarry, x: Array, *, projected: bool
    ) -> tuple[ZoneoutCarry, Array]:
        """The wrapped cell's step with its new base carry mixed with the previous one (``Cell.zoned_step``)."""
        if not any(self._all_rates()):
            step = self.cell.step_projected if projected else self.cell.step
            new_inner, y = step(params, carry.inner, x)
            return ZoneoutCarry(new_inner, carry.key), y
        inner_cell = self.cell if isinstance(self.cell, RegularizedCell) else None  # a wrapped wrapper
        next_key = [carry.key]

        def mix(previous_inner: Carry, candidate_inner: Carry) -> Carry:
            previous = previous_inner if inner_cell is None else inner_cell.unwrap_carry(previous_inner)
            candidate = candidate_inner if inner_cell is None else inner_cell.unwrap_carry(candidate_inner)
            expected = jax.tree.map(_expected_zoneout, self.rates, previous, candidate)
            if self.deterministic:
                state = expected
            else:
                sampled, key = self._sample(carry.key, previous, candidate)
                # A carry made without a key (all-zero key data) acts as in evaluation.
                no_key = jnp.all(carry.key == 0, axis=-1)
                state = jax.tree.map(lambda s, e: _where_batch(no_key, e, s), sampled, expected)
                next_key[0] = jnp.where(no_key[..., None], carry.key, key)
            return state if inner_cell is None else inner_cell.replace_base_carry(candidate_inner, state)

        new_inner, y = self.cell.zoned_step(params, carry.inner, x, mix, projected=projected)
        return ZoneoutCarry(new_inner, next_key[0]), y

    def _sample(self, key_data: Array, previous: Carry, candidate: Carry) -> tuple[Carry, Array]:
        """Mixes ``previous`` and ``candidate`` with this step's masks; returns it and the next keys.

        One call of the PRNG per example and step: its first ``K`` words are the
        next key (as ``jax.random.split`` makes keys) and the rest decide the
        masks, ``keep previous`` where ``bits < rate · 2³²``.
        """
        batch_shape = key_data.shape[:-1]
        key_words = key_data.shape[-1]
        rates, treedef = tree_flatten(self.rates)
        leaves_prev = treedef.flatten_up_to(previous)
        leaves_new = treedef.flatten_up_to(candidate)
        random = [0.0 < rate < 1.0 for rate in rates]
        if not any(random):  # every leaf always keeps (rate 1) or always updates (rate 0)
            state = [
                prev if rate == 1.0 else new for rate, prev, new in zip(rates, leaves_prev, leaves_new, strict=True)
            ]
            return jax.tree.unflatten(treedef, state), key_data
        sizes = [
            math.prod(leaf.shape[len(batch_shape) :]) if r else 0 for leaf, r in zip(leaves_prev, random, strict=True)
        ]

        def draw(one_key_data: Array) -> Array:
            return jax.random.bits(jax.random.wrap_key_data(one_key_data), (key_words + sum(sizes),), jnp.uint32)

        bits = jax.vmap(draw)(key_data.reshape(-1, key_words)).reshape(*batch_shape, -1)
        state, offset = [], key_words
        for rate, size, prev, new in zip(rates, sizes, leaves_prev, leaves_new, strict=True):
            if rate == 1.0:
                state.append(prev)
            elif rate == 0.0:
                state.append(new)
            else:
                keep_previous = bits[..., offset : offset + size].reshape(prev.shape) < jnp.uint32(int(rate * 2**32))
                state.append(jnp.where(keep_previous, prev, new))
            offset += size
        return jax.tree.unflatten(treedef, state), bits[..., :key_words]


def _expected_zoneout(rate: float, previous: Array, candidate: Array) -> Array:
    if rate == 0.0:
        return candidate
    if rate == 1.0:
        return previous
    return rate * previous + (1.0 - rate) * candidate


def _where_batch(condition: Array, on_true: Array, on_false: Array) -> Array:
    cond = condition.reshape(condition.shape + (1,) * (on_true.ndim - condition.ndim))
    return jnp.where(cond, on_true, on_false)


def zoneout(cell: Cell, rate: float | Any, *, deterministic: bool = False) -> Zoneout:
    """Wraps ``cell`` with zoneout (Krueger et al., 2017): units randomly keep their previous value.

    In training, at every step and for every unit, with probability ``rate``::

        h_t = m_t ⊙ h_{t-1} + (1 - m_t) ⊙ h̃_t,    m_t ~ Bernoulli(rate)

    where ``h̃_t`` is the wrapped cell's new carry (every leaf: for an LSTM both
    ``h`` and ``c``, each with its own mask) and the output is the new ``h``
    (a cell may mix only part of its carry: :meth:`~recurrax.Cell.zoned_step`).
    At evaluation (``deterministic=True``, or a carry made without a key) the
    masks are replaced by their expectation:
    ``h_t = rate ⊙ h_{t-1} + (1 - rate) ⊙ h̃_t``.

    Each example's PRNG key is in the carry (:class:`ZoneoutCarry`); draw it
    with ``initial_carry(batch_shape, key=key)``.

    Args:
      cell: a cell that exposes its recurrent state (SimpleRNN, LSTM, GRU, IndRNN, or
        your own) or mixes its own carry (QRNN's forget-gate zoneout), or one
        wrapped by :func:`recurrent_dropout`.
      rate: zoneout probability in ``[0, 1]``, or one per carry leaf with the
        carry's structure, e.g. ``LSTMCarry(h=0.05, c=0.5)`` (the paper's LSTM setting).
      deterministic: evaluation mode (the expectation).

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.cells import zoneout
      >>> cell = zoneout(recurrax.lstm(8), recurrax.LSTMCarry(h=0.05, c=0.5))
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> carry0 = cell.initial_carry((2,), key=jax.random.key(1))
      >>> ys, carry = recurrax.scan(cell, params, jnp.ones((2, 5, 3)), initial_carry=carry0)
      >>> ys.shape, carry.inner.c.shape
      ((2, 5, 8), (2, 8))

    References:
      Krueger et al., "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
      Activations", ICLR 2017.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"zoneout wraps a recurrax Cell, got {type(cell).__name__}")
    return Zoneout(cell=cell, rate=rate, deterministic=deterministic, **_wrapper_fields(cell))


def regularized(cell: Cell, recurrent_dropout_rate: float, zoneout_rate: Any) -> Cell:
    """``zoneout(recurrent_dropout(cell))``, each only when its rate is non-zero (what the layers build)."""
    if recurrent_dropout_rate:
        cell = recurrent_dropout(cell, recurrent_dropout_rate)
    if not (isinstance(zoneout_rate, numbers.Real) and zoneout_rate == 0):
        cell = zoneout(cell, zoneout_rate)
    return cell
