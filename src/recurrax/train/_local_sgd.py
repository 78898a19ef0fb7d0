"""Local SGD and DiLoCo: replicas that train apart for ``sync_every`` steps, then average what they learned.

Each of ``R`` replicas holds its own copy of the parameters and of the inner
optimizer's state, and takes its inner steps on its own share of each batch
(the batch's rows split into ``R`` equal slices, in order). Every
``sync_every`` steps the replicas' parameters are averaged into the global
parameters through an outer optimizer, and every replica restarts from them:

.. code-block:: python

    # x: global parameters; theta[r], inner_state[r]: replica r's
    for step, batch in enumerate(batches):
        for r in range(R):
            g = grad(loss)(theta[r], batch[r * B // R:(r + 1) * B // R])
            u, inner_state[r] = inner.update(g, inner_state[r], theta[r])
            theta[r] = theta[r] + u
        if (step + 1) % sync_every == 0:
            delta = x - mean(theta)                  # the outer "pseudo-gradient"
            u, outer_state = outer.update(delta, outer_state, x)
            x = x + u
            theta = [x] * R                          # inner states are kept

Local SGD is an outer ``optax.sgd(1.0)`` (``x`` becomes the replicas' mean);
DiLoCo (Douillard et al. 2023) an inner AdamW and an outer Nesterov SGD
(learning rate 0.7, momentum 0.9). The replicas are a leading axis ``[R, ...]``
of the optimizer state, split over the data axis of a
:class:`~recurrax.train.Partitioning`; the mean over it is the only cross-replica
operation, and it sits in the branch of a ``lax.cond`` that only a
synchronising step takes, so XLA's all-reduce runs once per round instead of
once per step. Nothing is hand-written.

The Trainer's parameters (what it evaluates, predicts with and checkpoints as
the model) are the global ones, ``x``; a checkpoint also holds the replicas and
the position in the round, so a run resumed mid-round continues exactly.

References:
  Stich, "Local SGD Converges Fast and Communicates Little", ICLR 2019.
  Douillard et al., "DiLoCo: Distributed Low-Communication Training of Language
  Models", 2023 (arXiv:2311.08105).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:
    from recurrax.train._partitioning import Partitioning

Array = jax.Array


class ReplicaState(NamedTuple):
    """The replicas' own state, every array with a leading replica axis ``[R, ...]``."""

    params: Any  # each replica's parameters
    inner: Any  # each replica's inner optimizer state


class LocalSGDState(NamedTuple):
    """The state of :func:`local_sgd`: where in the round, the replicas, the outer optimizer's state."""

    step: Array  # int32 []: inner steps taken since the last synchronisation, 0..sync_every-1
    rounds: Array  # int32 []: synchronisations so far (the communication rounds)
    replicas: ReplicaState
    outer: Any  # the outer optimizer's state, for the global parameters


@dataclasses.dataclass(frozen=True, eq=False)
class _Rule:
    inner: optax.GradientTransformation
    outer: optax.GradientTransformation
    replicas: int
    sync_every: int

    def init(self, params: Any) -> LocalSGDState:
        stacked = jax.tree.map(lambda p: jnp.broadcast_to(p, (self.replicas, *jnp.shape(p))), params)
        inner = jax.vmap(self.inner.init)(stacked)
        zero = jnp.zeros((), jnp.int32)
        return LocalSGDState(zero, zero, ReplicaState(stacked, inner), self.outer.init(params))

    def update(self, grads: Any, state: LocalSGDState, params: Any = None) -> tuple[Any, LocalSGDState]:
        """``grads``: each replica's gradient ``[R, ...]`` at its own parameters; ``params``: the global ones.
        The updates move the global parameters: zero except on a synchronising step."""
        if params is None:
            raise ValueError("local_sgd's update needs params (the global parameters the outer optimizer moves)")
        inner_updates, inner = jax.vmap(self.inner.update)(grads, state.replicas.inner, state.replicas.params)
        theta = optax.apply_updates(state.replicas.params, inner_updates)
        step = state.step + 1

        def synchronise(_: None) -> tuple[Any, Any, Any]:
            delta = jax.tree.map(lambda x, t: x - jnp.mean(t, axis=0), params, theta)
            updates, outer = self.outer.update(delta, state.outer, params)
            new = optax.apply_updates(params, updates)
            restart = jax.tree.map(lambda p, t: jnp.broadcast_to(p, t.shape).astype(t.dtype), new, theta)
            return jax.tree.map(lambda n, p: (n - p).astype(p.dtype), new, params), outer, restart

        def carry_on(_: None) -> tuple[Any, Any, Any]:
            return jax.tree.map(jnp.zeros_like, params), state.outer, theta

        sync = step >= self.sync_every
        updates, outer, theta = jax.lax.cond(sync, synchronise, carry_on, None)
        state = LocalSGDState(
            jnp.where(sync, 0, step).astype(jnp.int32),
            state.rounds + sync.astype(jnp.int32),
            ReplicaState(theta, inner),
            outer,
        )
        return updates, state


class LocalSGD(optax.GradientTransformation):  # type: ignore[misc]  # optax's NamedTuple is untyped here
    """The optax transformation :func:`local_sgd` makes; the Trainer recognises it and hands its update each
    replica's gradient. Its ``update(grads, state, params)`` takes gradients with a leading replica axis."""

    __slots__ = ()

    @property
    def rule(self) -> _Rule:
        """The inner and outer optimizers, the replica count and ``sync_every``."""
        rule = getattr(self.update, "__self__", None)
        assert isinstance(rule, _Rule)
        return rule


def local_sgd(
    inner: optax.GradientTransformation,
    *,
    replicas: int,
    sync_every: int,
    outer: optax.GradientTransformation | None = None,
) -> LocalSGD:
    """Local SGD: ``replicas`` copies train apart with ``inner`` and meet every ``sync_every`` steps.

    Give it to :class:`~recurrax.train.Trainer` as its optimizer (outermost:
    clipping, accumulation and the non-finite guard go inside ``inner``, where
    each replica applies them to its own gradient). With a
    :class:`~recurrax.train.Partitioning`, ``replicas`` must be a multiple of
    the data axis's size (usually equal to it: one replica per device), and each
    batch's size a multiple of ``replicas``. With ``sync_every=1``, an outer
    ``optax.sgd(1.0)`` and a linear inner optimizer (SGD, with or without
    momentum) it is plain data parallel training; Adam normalises each
    replica's gradient on its own, so there it is close but not equal.

    Args:
      inner: each replica's optimizer (its state is kept across rounds).
      replicas: how many replicas, ``R``.
      sync_every: inner steps per round, ``H``.
      outer: applied to the global parameters with the pseudo-gradient
        ``x - mean_r(theta_r)``; default ``optax.sgd(1.0)`` (the replicas' average).

    Returns:
      A :class:`LocalSGD` (an ``optax.GradientTransformation``) with state :class:`LocalSGDState`.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = local_sgd(optax.sgd(0.1), replicas=2, sync_every=4)
      >>> state = tx.init({"w": jnp.ones(3)})
      >>> state.replicas.params["w"].shape  # [R, ...]
      (2, 3)
    """
    for name, value in (("inner", inner), ("outer", outer)):
        if value is not None and not isinstance(value, optax.GradientTransformation):
            raise TypeError(f"local_sgd's {name} must be an optax.GradientTransformation, got {value!r}")
    for name, number in (("replicas", replicas), ("sync_every", sync_every)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"local_sgd: {name} must be a positive int, got {name}={number!r}")
    rule = _Rule(inner, optax.sgd(1.0) if outer is None else outer, replicas, sync_every)
    return LocalSGD(rule.init, rule.update)


def diloco(
    inner: optax.GradientTransformation,
    *,
    replicas: int,
    sync_every: int,
    outer_learning_rate: float = 0.7,
    outer_momentum: float = 0.9,
) -> LocalSGD:
    """DiLoCo (Douillard et al. 2023): :func:`local_sgd` with an outer Nesterov SGD (0.7, momentum 0.9).

    The paper's inner optimizer is AdamW (``optax.adamw``) and its rounds are
    long (``sync_every=500`` for language models).

    Example:
      >>> import optax
      >>> tx = diloco(optax.adamw(1e-3), replicas=8, sync_every=100)
    """
    outer = optax.sgd(outer_learning_rate, momentum=outer_momentum, nesterov=True)
    return local_sgd(inner, replicas=replicas, sync_every=sync_every, outer=outer)


def check_local_sgd(optimizer: Any, *, tbptt: int | None, loss_scaling: bool) -> None:
    """Raises ``ValueError`` where a Trainer's settings cannot run a :class:`LocalSGD` optimizer."""
    if not isinstance(optimizer, LocalSGD):
        return
    if tbptt is not None:
        raise ValueError(f"local_sgd/diloco does not support truncated BPTT (got tbptt={tbptt}); use tbptt=None")
    if loss_scaling:
        raise ValueError("local_sgd/diloco does not support float16 loss scaling; use precision='bf16' or float32")


def replica_sharding(partitioning: Partitioning, shape: tuple[int, ...]) -> jax.sharding.NamedSharding:
    """The sharding of a replica-stacked array ``[R, ...]``: the replica axis split over the data axis."""
    from jax.sharding import NamedSharding, PartitionSpec

    if not shape or shape[0] % partitioning.size:
        raise ValueError(
            f"local_sgd: replicas={shape[0] if shape else None} does not split over the {partitioning.size} devices "
            f"of mesh axis {partitioning.axis!r}; use a multiple of {partitioning.size} replicas"
        )
    return NamedSharding(partitioning.mesh, PartitionSpec(partitioning.axis))


def replica_gradients(
    optimizer: LocalSGD,
    loss_of: Callable[[Any, Any, dict[str, Array]], tuple[Array, tuple[Any, Any]]],
    opt_state: LocalSGDState,
    rest: Any,
    batch: dict[str, Array],
    partitioning: Partitioning | None,
) -> tuple[Any, Any, Any]:
    """Each replica's gradient on its slice of ``batch`` at its own parameters: ``(grads [R, ...], stats, rest)``.

    ``loss_of(params, rest, batch) -> (loss, (stats, rest))``; ``stats`` come back
    summed over the replicas (the whole batch's), ``rest`` as replica 0 left it
    (every replica starts from the same ``rest``, so dropout draws the same masks
    on each replica's rows).
    """
    replicas = optimizer.rule.replicas
    sizes = {int(jnp.shape(v)[0]) for v in batch.values() if jnp.ndim(v) >= 1}
    for n in sizes:
        if n % replicas:
            raise ValueError(
                f"local_sgd: a batch of {n} examples does not split into replicas={replicas} equal slices; "
                f"use a batch size that is a multiple of {replicas}"
            )

    def split(v: Array) -> Array:
        v = jnp.reshape(v, (replicas, v.shape[0] // replicas, *v.shape[1:]))
        if partitioning is None:
            return v
        placed: Array = jax.lax.with_sharding_constraint(v, replica_sharding(partitioning, v.shape))
        return placed

    sliced = {k: split(v) if jnp.ndim(v) >= 1 else v for k, v in batch.items()}
    axes = {k: 0 if jnp.ndim(v) >= 1 else None for k, v in batch.items()}
    grad_fn = jax.vmap(jax.value_and_grad(loss_of, has_aux=True), in_axes=(0, None, axes))
    (_, (stats, rests)), grads = grad_fn(opt_state.replicas.params, rest, sliced)
    stats = jax.tree.map(lambda a: jnp.sum(a, axis=0), stats)
    return grads, stats, jax.tree.map(lambda a: a[0], rests)
