"""The dynamics of a recurrent cell: Jacobians along a trajectory, the Lyapunov exponent, fixed points, PCA.

A cell's step is a map ``F_x: state → state`` for each input ``x``. Everything
here reads that map:

* :func:`recurrent_jacobians` — ``J_t = ∂state_t/∂state_{t−1}`` along the
  trajectory that ``xs`` drives; :func:`jacobian_singular_values` their spectra.
  A gradient through time is a product of these matrices: singular values
  below 1 make it vanish, above 1 explode.
* :func:`lyapunov_exponent` — the growth rate of that product,
  ``λ = lim (1/T) log ‖J_T ⋯ J_1 v‖``, from one tangent vector (no full Jacobians).
* :func:`fixed_points` — points with ``F_x(h) ≈ h`` for a constant input,
  found by minimising ``q(h) = ½‖F_x(h) − h‖²`` (Sussillo & Barak 2013), with
  their linearised stability.
* :func:`state_trajectory` and :func:`pca_trajectories` — the states the
  model visits, projected onto their principal components.

**The state** ``S`` is one example's carry, flattened: its leaves in pytree
order (an LSTM's ``[h, c]``, so ``S = 2H``), each raveled; a complex leaf (the
LRU's) contributes its real parts, then its imaginary parts, so the Jacobian is
that of the real map (an LRU eigenvalue ``λ`` gives the singular values
``|λ|, |λ|``). Integer leaves, if a carry has any, are not part of the state:
they follow the trajectory unchanged by the derivatives.

References:
  Sussillo & Barak, "Opening the black box: low-dimensional dynamics in
  high-dimensional recurrent neural networks", Neural Computation 2013.
  Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
  networks", ICML 2013 (the Jacobian products behind vanishing gradients).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recurrax._cell import Cell
from recurrax._params import check_params, params_in_features
from recurrax._scan import scan
from recurrax._types import Array, Carry, Params, tree_flatten
from recurrax._validation import check_initial_carry, check_lengths, check_positive_int, check_sequence


# ------------------------------------------------------------------- the state
class _States:
    """One example's carry ↔ its flat real state vector ``[S]``."""

    def __init__(self, carry: Carry) -> None:
        leaves, self.treedef = tree_flatten(carry)
        self.shapes = [tuple(jnp.shape(leaf)) for leaf in leaves]
        self.dtypes = [jnp.dtype(leaf.dtype) for leaf in leaves]
        self.in_state = [jnp.issubdtype(dt, jnp.inexact) for dt in self.dtypes]
        self.is_complex = [jnp.issubdtype(dt, jnp.complexfloating) for dt in self.dtypes]
        real = [jnp.real(jnp.zeros((), dt)).dtype for dt, used in zip(self.dtypes, self.in_state, strict=True) if used]
        if not real:
            raise ValueError("the cell's carry has no floating leaves: there is no state to differentiate")
        # The widest leaf's precision: strict promotion refuses to mix float widths implicitly.
        self.dtype = max(real, key=lambda dt: dt.itemsize)
        self.size = sum(
            int(np.prod(shape)) * (2 if cplx else 1)
            for shape, used, cplx in zip(self.shapes, self.in_state, self.is_complex, strict=True)
            if used
        )

    def flatten(self, carry: Carry) -> Array:
        parts = []
        for leaf, used, cplx in zip(jax.tree.leaves(carry), self.in_state, self.is_complex, strict=True):
            if used:
                flat = jnp.ravel(leaf)
                parts += [jnp.real(flat), jnp.imag(flat)] if cplx else [flat]
        return jnp.concatenate([p.astype(self.dtype) for p in parts])

    def unflatten(self, state: Array, like: Carry) -> Carry:
        """The carry whose floating leaves come from ``state``; the others from ``like``."""
        leaves, start = [], 0
        for leaf, shape, dt, used, cplx in zip(
            jax.tree.leaves(like), self.shapes, self.dtypes, self.in_state, self.is_complex, strict=True
        ):
            if not used:
                leaves.append(leaf)
                continue
            n = int(np.prod(shape))
            if cplx:
                real, imag = state[start : start + n], state[start + n : start + 2 * n]
                value = jax.lax.complex(real, imag)
                start += 2 * n
            else:
                value = state[start : start + n]
                start += n
            leaves.append(value.reshape(shape).astype(dt))
        return jax.tree.unflatten(self.treedef, leaves)


def _check_cell(cell: Any) -> Cell:
    from recurrax.cells import RegularizedCell  # the interpret package sits above the cells

    if isinstance(cell, RegularizedCell):
        raise TypeError(
            f"cell is {type(cell).__name__}, whose carry holds dropout/zoneout randomness; analyse the model's "
            "dynamics without it: pass cell.base_cell"
        )
    if isinstance(cell, Cell):
        return cell
    if hasattr(cell, "cell") and hasattr(cell, "pure_params"):
        raise TypeError(
            f"cell must be a recurrax Cell, got the layer {type(cell).__name__}; "
            "pass layer.cell and layer.pure_params()"
        )
    raise TypeError(f"cell must be a recurrax Cell (e.g. recurrax.lstm(64)), got {type(cell).__name__}")


class _Trajectory(NamedTuple):
    xs: Array
    initial_carry: Carry
    lengths: Array | None
    batch_shape: tuple[int, ...]


def _check_trajectory(cell: Cell, params: Params, xs: Any, initial_carry: Carry, lengths: Any) -> _Trajectory:
    xs = check_sequence(xs, "xs", time_major=False, features=None)
    check_params(cell, params, xs.shape[-1])
    batch_shape = tuple(xs.shape[:-2])
    if initial_carry is None:
        initial_carry = cell.initial_carry(batch_shape)
    else:
        check_initial_carry(initial_carry, jax.eval_shape(lambda: cell.initial_carry(batch_shape)), batch_shape)
    if lengths is not None:
        lengths = check_lengths(lengths, batch_shape, xs.shape[-2])
    return _Trajectory(xs, initial_carry, lengths, batch_shape)


def _per_example(
    step: Callable[[Carry, Array, Any], tuple[tuple[Carry, Any], Any]], batch_shape: tuple[int, ...]
) -> Callable[[Any, Array], tuple[Any, Any]]:
    """A scan step over ``(carry, extra)`` with leaves ``[*B, ...]`` that runs ``step(carry, x, extra)`` on each
    example alone (flattened batch, vmapped): the derivatives are per example, ``[S, S]``, not ``[B·S, B·S]``."""
    n = int(np.prod(batch_shape))

    def batched(carry_and_extra: Any, x: Array) -> tuple[Any, Any]:
        flat = jax.tree.map(lambda a: a.reshape((n, *a.shape[len(batch_shape) :])), (carry_and_extra, x))
        out = jax.vmap(lambda ce, xi: step(ce[0], xi, ce[1]))(*flat)
        return jax.tree.map(lambda a: a.reshape((*batch_shape, *a.shape[1:])), out)  # type: ignore[no-any-return]

    return batched


def _jit_static(*static: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``jax.jit`` with the arguments at ``static`` (the cell first) static; an unhashable cell (a field holding
    a list, say) compiles each call's closure instead."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        compiled = jax.jit(fn, static_argnums=static)

        @functools.wraps(fn)
        def call(*args: Any) -> Any:
            try:
                hash(tuple(args[i] for i in static))
            except TypeError:
                dynamic = [i for i in range(len(args)) if i not in static]

                def closed(*values: Any) -> Any:
                    full = list(args)
                    for i, value in zip(dynamic, values, strict=True):
                        full[i] = value
                    return fn(*full)

                return jax.jit(closed)(*(args[i] for i in dynamic))
            return compiled(*args)

        return call

    return wrap


# -------------------------------------------------------------- the Jacobians
def recurrent_jacobians(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
) -> Array:
    """The recurrent Jacobians ``J_t = ∂state_t/∂state_{t−1}`` along the trajectory driven by ``xs``.

    ``state_t`` is the flattened carry after step ``t`` (see the module
    docstring: ``[h, c]`` for an LSTM, real and imaginary parts for the LRU),
    so ``J_t`` is the derivative of step ``t`` at the carry it received. Each
    is computed with forward-mode autodiff (``S`` Jacobian-vector products per
    example and step), inside one scan.

    Shapes: ``xs[*B, T, D]``, ``lengths[*B]`` → ``[*B, T, S, S]``. Past an
    example's length the Jacobians are **zero** (the engine's rule for outputs
    past ``lengths``); leave those steps out of statistics.

    Args:
      cell: a recurrax cell; for a ``recurrax.nn`` layer, ``layer.cell``.
      params: its parameters (``layer.pure_params()`` for a layer).
      xs: the inputs, batch-major.
      initial_carry: the carry before the first step (default ``cell.initial_carry``).
      lengths: valid steps of each example.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.interpret import recurrent_jacobians
      >>> cell = recurrax.lstm(3)
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> recurrent_jacobians(cell, params, jnp.ones((4, 5, 2))).shape  # S = 2H: h and c
      (4, 5, 6, 6)
    """
    cell = _check_cell(cell)
    run = _check_trajectory(cell, params, xs, initial_carry, lengths)
    return _jacobians(cell, params, run.xs, run.initial_carry, run.lengths)  # type: ignore[no-any-return]


@_jit_static(0)
def _jacobians(cell: Cell, params: Params, xs: Array, initial_carry: Carry, lengths: Array | None) -> Array:
    batch_shape = tuple(xs.shape[:-2])
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))

    def one(carry: Carry, x: Array, extra: None) -> tuple[tuple[Carry, None], Array]:
        def f(state: Array) -> tuple[Array, Carry]:
            new, _ = cell.step(params, states.unflatten(state, carry), x)
            return states.flatten(new), new

        jac, new = jax.jacfwd(f, has_aux=True)(states.flatten(carry))
        return (new, None), jac

    jacobians, _ = scan(_per_example(one, batch_shape), None, xs, initial_carry=(initial_carry, None), lengths=lengths)
    return jacobians


def jacobian_singular_values(jacobians: Array) -> Array:
    """Singular values of each Jacobian, largest first: ``[..., S, S]`` → ``[..., S]``.

    Values near 1 carry a gradient through the step unchanged; the product
    over ``k`` steps scales it by roughly ``σ^k`` along each direction.

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.interpret import jacobian_singular_values
      >>> jacobian_singular_values(jnp.diag(jnp.array([0.5, -2.0]))).tolist()
      [2.0, 0.5]
    """
    jacobians = jnp.asarray(jacobians)
    if jacobians.ndim < 2 or jacobians.shape[-1] != jacobians.shape[-2]:
        raise ValueError(f"jacobians must have shape [..., S, S], got {tuple(jacobians.shape)}")
    return jnp.linalg.svd(jacobians, compute_uv=False)


# ------------------------------------------------------- the Lyapunov exponent
def lyapunov_exponent(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
    key: Array | None = None,
    tangent: Array | None = None,
) -> Array:
    """The largest Lyapunov exponent along each trajectory, in nats per step: ``[*B, T, D]`` → ``[*B]``.

    A tangent vector ``v`` rides along the trajectory: ``u_t = J_t v_{t−1}``
    (one Jacobian-vector product), ``v_t = u_t / ‖u_t‖``, and
    ``λ = (1/T) Σ_t log ‖u_t‖`` over each example's valid steps. A random
    ``v_0`` aligns with the most expanding direction within a few steps, so
    ``λ`` estimates the growth rate of ``‖J_T ⋯ J_1‖``: negative means
    gradients through time vanish (as ``e^{λk}`` over ``k`` steps), positive
    that they explode. For a linear map ``h' = W h`` it is ``log ρ(W)``.
    A Jacobian that maps the tangent to zero (dead ReLUs) gives ``−inf``.

    Args:
      cell, params, xs, initial_carry, lengths: as in :func:`recurrent_jacobians`.
      key: draws ``v_0`` (standard normal per example; default ``jax.random.key(0)``).
      tangent: ``v_0`` itself, ``[S]`` or ``[*B, S]``, instead of ``key``.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.interpret import lyapunov_exponent
      >>> cell = recurrax.lstm(3)
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> lyapunov_exponent(cell, params, jnp.ones((4, 5, 2))).shape
      (4,)
    """
    cell = _check_cell(cell)
    run = _check_trajectory(cell, params, xs, initial_carry, lengths)
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))
    shape = (*run.batch_shape, states.size)
    if tangent is None:
        v0 = jax.random.normal(jax.random.key(0) if key is None else key, shape, states.dtype)
    else:
        if key is not None:
            raise ValueError("give key or tangent, not both")
        v0 = jnp.asarray(tangent)
        if v0.shape not in (shape[-1:], shape):
            raise ValueError(f"tangent must have shape {shape[-1:]} or {shape} ([*B, S]), got {tuple(v0.shape)}")
        v0 = jnp.broadcast_to(v0.astype(states.dtype), shape)
    num_steps = run.xs.shape[-2]
    steps = run.lengths if run.lengths is not None else jnp.full(run.batch_shape, num_steps)
    return _lyapunov(cell, params, run.xs, run.initial_carry, run.lengths, v0, steps)  # type: ignore[no-any-return]


@_jit_static(0)
def _lyapunov(
    cell: Cell, params: Params, xs: Array, initial_carry: Carry, lengths: Array | None, v0: Array, steps: Array
) -> Array:
    batch_shape = tuple(xs.shape[:-2])
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))
    v0 = v0 / jnp.linalg.norm(v0, axis=-1, keepdims=True)

    def one(carry: Carry, x: Array, v: Array) -> tuple[tuple[Carry, Array], Array]:
        def f(state: Array) -> tuple[Array, Carry]:
            new, _ = cell.step(params, states.unflatten(state, carry), x)
            return states.flatten(new), new

        _, u, new = jax.jvp(f, (states.flatten(carry),), (v,), has_aux=True)
        norm = jnp.linalg.norm(u)
        # A zero image has no direction to follow: keep the old one (the -inf growth already says it all).
        return (new, jnp.where(norm > 0, u / jnp.where(norm > 0, norm, 1), v)), jnp.log(norm)

    # The engine freezes the carry and the tangent past lengths and zeros the growth there.
    growth, _ = scan(_per_example(one, batch_shape), None, xs, initial_carry=(initial_carry, v0), lengths=lengths)
    return jnp.sum(growth, axis=-1) / steps.astype(growth.dtype)


# ------------------------------------------------------------- fixed points
class FixedPoints(NamedTuple):
    """Fixed points of ``h ↦ F_x(h)`` found by :func:`fixed_points`, as NumPy arrays.

    Attributes:
      points: ``[N, S]`` flat states (see the module docstring for the layout).
      speeds: ``[N]`` ``q = ½‖F(h) − h‖²`` at each point: 0 at a true fixed point;
        small but not 0 at a slow point.
      jacobians: ``[N, S, S]`` ``∂F/∂h`` at each point.
      eigenvalues: ``[N, S]`` complex eigenvalues of the Jacobians, largest modulus first.
      stable: ``[N]`` True where every ``|eigenvalue| < 1`` (linearised stability).
    """

    points: np.ndarray
    speeds: np.ndarray
    jacobians: np.ndarray
    eigenvalues: np.ndarray
    stable: np.ndarray

    def unique(self, tolerance: float = 1e-3, *, max_speed: float | None = None) -> FixedPoints:
        """The distinct points, in their original order: of points closer than ``tolerance`` the slowest stays;
        with ``max_speed``, only points with ``speed <= max_speed``."""
        order = np.argsort(self.speeds, kind="stable")
        if max_speed is not None:
            order = order[self.speeds[order] <= max_speed]
        kept: list[int] = []
        for i in order:
            if all(np.linalg.norm(self.points[i] - self.points[j]) > tolerance for j in kept):
                kept.append(int(i))
        index = np.sort(np.asarray(kept, dtype=np.int64))
        return FixedPoints(*(field[index] for field in self))


def fixed_points(
    cell: Cell,
    params: Params,
    initial_states: Array | int,
    *,
    inputs: Array | None = None,
    key: Array | None = None,
    steps: int = 2000,
    learning_rate: float = 0.01,
) -> FixedPoints:
    """Fixed points of the autonomous dynamics ``h ↦ F_x(h)`` under a constant input (Sussillo & Barak 2013).

    Minimises ``q(h) = ½‖F_x(h) − h‖²`` from each initial state with Adam
    (learning rate decayed to 0 by a cosine schedule), all states at once in
    one compiled loop, then linearises ``F_x`` at each result. Minima of ``q``
    with ``q > 0`` are *slow points*: check ``speeds`` (or use
    :meth:`FixedPoints.unique` with ``max_speed``). Good starting states are
    ones the model visits (rows of :func:`state_trajectory`'s output).

    Args:
      cell: a recurrax cell (``layer.cell`` for a ``recurrax.nn`` layer).
      params: its parameters.
      initial_states: ``[N, S]`` starting states, or a count ``N`` of states
        drawn from a standard normal (with ``key``, default ``jax.random.key(0)``).
      inputs: the constant input ``x[D]`` (default zeros).
      key: see ``initial_states``.
      steps: Adam steps.
      learning_rate: Adam's initial learning rate.

    Returns:
      A :class:`FixedPoints` of ``N`` points (duplicates included).

    Example:
      >>> import jax.numpy as jnp, recurrax
      >>> from recurrax.interpret import fixed_points
      >>> cell = recurrax.simple_rnn(1)  # h' = tanh(2h): fixed points at 0 and ±0.9575
      >>> params = {"input_kernel": jnp.zeros((1, 1)), "recurrent_kernel": jnp.full((1, 1), 2.0), "bias": jnp.zeros(1)}
      >>> found = fixed_points(cell, params, jnp.array([[-2.0], [0.1], [0.5]])).unique()
      >>> [round(float(h), 4) for h in found.points[:, 0]], found.stable.tolist()
      ([-0.9575, 0.0, 0.9575], [True, False, True])
    """
    cell = _check_cell(cell)
    steps = check_positive_int(steps, "steps")
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))
    in_features = params_in_features(cell, params)
    if inputs is None:
        if in_features is None:
            raise ValueError(f"params do not fit {type(cell).__name__}.init for any input width; pass inputs=x[D]")
        x = jnp.zeros((in_features,), states.dtype)
    else:
        x = jnp.asarray(inputs)
        if x.ndim != 1 or (in_features is not None and x.shape[0] != in_features):
            raise ValueError(f"inputs must be one constant input x[D] (D = {in_features}), got shape {tuple(x.shape)}")
    check_params(cell, params, x.shape[0])
    if isinstance(initial_states, int) and not isinstance(initial_states, bool):
        count = check_positive_int(initial_states, "initial_states")
        start = jax.random.normal(jax.random.key(0) if key is None else key, (count, states.size), states.dtype)
    else:
        start = jnp.asarray(initial_states)
        if start.ndim != 2 or start.shape[1] != states.size:
            raise ValueError(
                f"initial_states must have shape [N, S] with S = {states.size} (the flattened carry), "
                f"got {tuple(start.shape)}"
            )
        start = start.astype(states.dtype)
    points, speeds, jacobians = _find_fixed_points(cell, params, x, start, steps, float(learning_rate))
    points, speeds, jacobians = np.asarray(points), np.asarray(speeds), np.asarray(jacobians)
    # NumPy, not jnp.linalg.eig: jax computes non-symmetric eigenvalues on the CPU only.
    eigenvalues = np.linalg.eigvals(jacobians).astype(np.result_type(jacobians.dtype, np.complex64))
    eigenvalues = np.take_along_axis(eigenvalues, np.argsort(-np.abs(eigenvalues), axis=-1, kind="stable"), axis=-1)
    stable = np.max(np.abs(eigenvalues), axis=-1) < 1
    return FixedPoints(points, speeds, jacobians, eigenvalues, stable)


@_jit_static(0, 4, 5)
def _find_fixed_points(
    cell: Cell, params: Params, x: Array, start: Array, steps: int, learning_rate: float
) -> tuple[Array, Array, Array]:
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))
    like = cell.initial_carry(())

    def transition(state: Array) -> Array:
        new, _ = cell.step(params, states.unflatten(state, like), x)
        return states.flatten(new)

    def speed(state: Array) -> Array:
        return 0.5 * jnp.sum(jnp.square(transition(state) - state))

    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    speed_and_grad = jax.vmap(jax.value_and_grad(speed))

    def descend(carry: tuple[Array, Any], _: None) -> tuple[tuple[Array, Any], None]:
        points, opt_state = carry
        _, grads = speed_and_grad(points)
        with jax.numpy_dtype_promotion("standard"):  # optax raises an int32 step count to float powers
            updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(points, updates), opt_state), None

    (points, _), _ = jax.lax.scan(descend, (start, optimizer.init(start)), None, length=steps)
    speeds, _ = speed_and_grad(points)
    return points, speeds, jax.vmap(jax.jacfwd(transition))(points)


# ------------------------------------------------------------------ the states
def state_trajectory(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
) -> Array:
    """The flat state after every step: ``xs[*B, T, D]`` → ``[*B, T, S]``.

    ``recurrax.scan(..., return_carries=True)``'s carries, flattened as in the
    module docstring. Past an example's length the state stays at its last value.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.interpret import state_trajectory
      >>> cell = recurrax.lstm(3)
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> state_trajectory(cell, params, jnp.ones((4, 5, 2))).shape
      (4, 5, 6)
    """
    cell = _check_cell(cell)
    run = _check_trajectory(cell, params, xs, initial_carry, lengths)
    return _trajectory(cell, params, run.xs, run.initial_carry, run.lengths)  # type: ignore[no-any-return]


@_jit_static(0)
def _trajectory(cell: Cell, params: Params, xs: Array, initial_carry: Carry, lengths: Array | None) -> Array:
    states = _States(jax.eval_shape(lambda: cell.initial_carry(())))
    _, _, carries = scan(cell, params, xs, initial_carry=initial_carry, lengths=lengths, return_carries=True)
    flatten = states.flatten
    for _ in range(xs.ndim - 1):  # the batch dims and time
        flatten = jax.vmap(flatten)
    return flatten(carries)


class PCA(NamedTuple):
    """Principal components of a set of states, from :func:`pca_trajectories` (NumPy arrays).

    Attributes:
      projections: ``[..., k]`` the states in component coordinates.
      components: ``[k, S]`` unit directions, largest variance first.
      mean: ``[S]`` the states' mean (subtracted before projecting).
      explained_variance_ratio: ``[k]`` the fraction of the variance along each component.
    """

    projections: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance_ratio: np.ndarray

    def project(self, states: Any) -> np.ndarray:
        """Other states (fixed points, another trajectory) in the same coordinates: ``[..., S]`` → ``[..., k]``."""
        states = np.asarray(states, dtype=np.float64)
        if states.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"states must have {self.mean.shape[0]} features, got shape {states.shape}")
        return np.asarray((states - self.mean) @ self.components.T)


def pca_trajectories(states: Any, n_components: int = 2, *, lengths: Any = None) -> PCA:
    """Projects trajectories ``[*B, T, S]`` onto their first ``n_components`` principal components.

    The components are fitted to every state at once (each example's valid
    steps only, with ``lengths[*B]``), in float64; each component's sign makes
    its largest loading positive, so results are reproducible.

    Example:
      >>> import numpy as np
      >>> from recurrax.interpret import pca_trajectories
      >>> t = np.linspace(0, 2 * np.pi, 50)
      >>> circle = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], -1) @ np.eye(3)[[2, 0, 1]]
      >>> pca = pca_trajectories(circle[None])  # one trajectory [1, T, 3] in a plane
      >>> pca.projections.shape, round(float(pca.explained_variance_ratio.sum()), 6)
      ((1, 50, 2), 1.0)
    """
    states = np.asarray(states, dtype=np.float64)
    if states.ndim < 2:
        raise ValueError(f"states must have shape [*B, T, S], got {states.shape}")
    n_components = check_positive_int(n_components, "n_components")
    if n_components > states.shape[-1]:
        raise ValueError(f"n_components ({n_components}) exceeds the state size S = {states.shape[-1]}")
    if lengths is None:
        fitted = states.reshape(-1, states.shape[-1])
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != states.shape[:-2]:
            raise ValueError(f"lengths must have the batch shape {states.shape[:-2]}, got {lengths.shape}")
        valid = np.arange(states.shape[-2]) < lengths[..., None]
        fitted = states[valid]
    mean = fitted.mean(axis=0)
    _, singular, vt = np.linalg.svd(fitted - mean, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular**2
    ratio = variance[:n_components] / variance.sum() if variance.sum() > 0 else np.zeros(n_components)
    return PCA((states - mean) @ components.T, components, mean, ratio)
