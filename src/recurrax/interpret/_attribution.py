"""Attributions over time: which steps and features of a sequence a model's output rests on.

One entry point, :func:`explain`, returns ``[B, T, D]`` attributions (zero
past each example's length) by gradient × input, integrated gradients,
occlusion or SHAP. The model is any callable ``model(xs[B, T, D],
lengths=...) -> outputs`` (every ``recurrax.models`` model and backbone);
the explained scalar per example is chosen by ``target`` (see
:func:`explain`). The gradient methods and occlusion run as compiled JAX
programs over batches of inputs; SHAP uses the ``shap`` package's
model-agnostic permutation explainer around the same compiled predictor.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._validation import check_choice, check_lengths, check_positive_int, check_sequence

Method = Literal["gradient_x_input", "integrated_gradients", "occlusion", "shap"]
METHODS: tuple[str, ...] = ("gradient_x_input", "integrated_gradients", "occlusion", "shap")
Array = jax.Array


def explain(
    model: Callable[..., Any],
    inputs: Any,
    *,
    lengths: Any = None,
    method: Method = "integrated_gradients",
    target: int | Any | None = None,
    step: int | Any | None = None,
    baseline: Any = None,
    num_steps: int = 64,
    window: int = 1,
    max_evals: int | None = None,
    seed: int = 0,
    chunk_size: int = 256,
) -> np.ndarray:
    """Attributions ``[B, T, D]`` of each input step and feature to one model output per example.

    The explained output ``f_b(x)`` of example ``b`` is ``outputs[b, target]``
    for outputs ``[B, C]`` (``target``: an int, or ``[B]`` ints; ``None``: the
    predicted class, or 0 when ``C == 1``), and ``outputs[b, step, target]``
    for per-step outputs ``[B, T, C]`` (``step``: an int or ``[B]``; ``None``:
    each example's last valid step).

    Methods (``baseline``: the reference input, zeros by default, ``[T, D]`` or ``[B, T, D]``):

    * ``"gradient_x_input"``: ``∂f/∂x ⊙ x``.
    * ``"integrated_gradients"`` (Sundararajan et al., 2017): ``(x − x̄) ⊙
      ∫₀¹ ∂f/∂x(x̄ + α(x − x̄)) dα`` by the trapezoidal rule on ``num_steps``
      intervals. Complete: the attributions sum to ``f(x) − f(x̄)`` as the
      rule converges — as ``1/num_steps²`` for a smooth model (a GRU
      regressor: 1e-3 relative at 64), only as ``1/num_steps`` through ReLU
      kinks (the classic head's ReLU layer: 0.4 % at 128).
    * ``"occlusion"`` (Zeiler & Fergus, 2014): ``f(x) − f(x with feature d
      of steps [t, t + window) set to the baseline)``, for every window start
      ``t`` and feature ``d``, shared equally by the window's steps and
      averaged over the windows that cover each step; ``T·D`` evaluations
      per example for ``window=1``.
    * ``"shap"`` (Lundberg & Lee, 2017): Shapley values of the ``T·D``
      (step, feature) players by ``shap.PermutationExplainer``, a player
      being absent when it takes the baseline's value; ``max_evals`` model
      evaluations per example (default ``10·(2·T·D + 1)``: ten permutations).
      Needs ``pip install "recurrax[interpret]"``.

    Args:
      model: ``model(xs[B, T, D], lengths=lengths)``; put NNX models in eval mode first.
      inputs: ``[B, T, D]``.
      lengths: ``[B]`` valid lengths (attributions past them are zero).
      method: one of :data:`METHODS`.
      target, step: which output to explain (above).
      baseline: the reference input (zeros).
      num_steps: integrated gradients' intervals.
      window: occlusion's window length in steps.
      max_evals: SHAP's evaluations per example.
      seed: SHAP's permutation seed.
      chunk_size: inputs evaluated per compiled call (memory against speed).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import SequenceRegressor
      >>> from recurrax.interpret import explain
      >>> model = SequenceRegressor(2, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((3, 10, 2))
      >>> explain(model, xs, method="integrated_gradients").shape
      (3, 10, 2)
    """
    check_choice(method, "method", METHODS)
    xs = np.asarray(check_sequence(inputs, "inputs", time_major=False, features=None))
    if xs.ndim != 3:
        raise ValueError(f"inputs must have shape [B, T, D], got {xs.shape}")
    B, T = xs.shape[:2]
    lengths_arr = None if lengths is None else np.asarray(check_lengths(lengths, (B,), T))
    check_positive_int(num_steps, "num_steps")
    check_positive_int(window, "window")
    check_positive_int(chunk_size, "chunk_size")
    if window > T:
        raise ValueError(f"window must be at most the sequence length T={T}, got {window}")
    reference = _baseline(baseline, xs.shape, xs.dtype)
    scalar = _target_function(model, xs, lengths_arr, target, step)
    if method == "gradient_x_input":
        attributions = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(scalar(x, np.arange(B)))))(xs)) * xs
    elif method == "integrated_gradients":
        attributions = _integrated_gradients(scalar, xs, reference, num_steps)
    elif method == "occlusion":
        attributions = _occlusion(scalar, xs, reference, window, chunk_size)
    else:
        attributions = _shap(scalar, xs, reference, max_evals, seed, chunk_size)
    if lengths_arr is not None:
        attributions = attributions * (np.arange(T) < lengths_arr[:, None])[..., None]
    return np.asarray(attributions)


def model_output(
    model: Callable[..., Any], inputs: Any, *, lengths: Any = None, target: Any = None, step: Any = None
) -> np.ndarray:
    """``f_b(x)`` for every example ``[B]``: the output :func:`explain` attributes (same ``target``/``step`` rules)."""
    xs = np.asarray(check_sequence(inputs, "inputs", time_major=False, features=None))
    lengths_arr = None if lengths is None else np.asarray(check_lengths(lengths, xs.shape[:1], xs.shape[1]))
    scalar = _target_function(model, xs, lengths_arr, target, step)
    return np.asarray(jax.jit(lambda x: scalar(x, np.arange(xs.shape[0])))(xs))


# ------------------------------------------------------------------ pieces
def _baseline(baseline: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    if baseline is None:
        return np.zeros(shape, dtype)
    reference = np.asarray(baseline, dtype)
    if reference.shape == shape[1:]:
        reference = np.broadcast_to(reference, shape)
    if reference.shape != shape:
        raise ValueError(f"baseline must have shape {shape[1:]} or {shape}, got {reference.shape}")
    return reference


def _target_function(
    model: Callable[..., Any], xs: np.ndarray, lengths: np.ndarray | None, target: Any, step: Any
) -> Callable[[Any, Any], Array]:
    """``scalar(x[N, T, D], rows[N]) -> [N]``: example ``rows[n]``'s explained output, evaluated on ``x[n]``.

    ``rows`` says which example each input row stands for (its length, its
    target), so that many perturbed copies of the batch run in one call.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(xs, lengths=...), got {type(model).__name__}")
    B, T, _ = xs.shape
    probe = jax.eval_shape(lambda x: model(x, lengths=lengths), jax.ShapeDtypeStruct(xs.shape, xs.dtype))
    out_shape = tuple(probe.shape)
    per_step = len(out_shape) == 3
    if len(out_shape) not in (2, 3) or out_shape[0] != B or (per_step and out_shape[1] != T):
        raise ValueError(f"model outputs must be [B, C] or [B, T, C]; got {out_shape} for inputs {xs.shape}")
    num_classes = out_shape[-1]
    last = np.full(B, T - 1) if lengths is None else lengths - 1
    steps = last if step is None else _per_example(step, B, "step", T)
    if target is None:
        if num_classes == 1:
            targets = np.zeros(B, np.int64)
        else:  # the predicted class, from one forward pass on the unperturbed inputs
            outputs = np.asarray(jax.jit(lambda x: model(x, lengths=lengths))(xs))
            targets = np.argmax(outputs[np.arange(B), steps] if per_step else outputs, axis=-1)
    else:
        targets = _per_example(target, B, "target", num_classes)

    def scalar(x: Any, rows: Any) -> Array:
        rows = jnp.asarray(rows)
        out = model(x, lengths=None if lengths is None else jnp.asarray(lengths)[rows])
        n = jnp.arange(out.shape[0])
        picked = out[n, jnp.asarray(steps)[rows]] if per_step else out
        value: Array = picked[n, jnp.asarray(targets)[rows]]
        return value

    return scalar


def _per_example(value: Any, batch: int, name: str, bound: int) -> np.ndarray:
    array = np.broadcast_to(np.asarray(value), (batch,))
    if not np.issubdtype(array.dtype, np.integer) or np.any(array < 0) or np.any(array >= bound):
        raise ValueError(f"{name} must be an int (or [B] ints) in [0, {bound}), got {value!r}")
    return array.astype(np.int64)


def _integrated_gradients(
    scalar: Callable[..., Array], xs: np.ndarray, reference: np.ndarray, num_steps: int
) -> np.ndarray:
    rows = np.arange(xs.shape[0])
    # Trapezoidal rule on [0, 1]: the end points weigh half.
    alphas = np.linspace(0.0, 1.0, num_steps + 1, dtype=xs.dtype)
    weights = np.full(num_steps + 1, 1.0 / num_steps, xs.dtype)
    weights[[0, -1]] /= 2

    @jax.jit
    def average_gradient(x: Array, x_ref: Array) -> Array:
        grad = jax.grad(lambda z: jnp.sum(scalar(z, rows)))

        def add(total: Array, alpha_weight: tuple[Array, Array]) -> tuple[Array, None]:
            alpha, weight = alpha_weight
            return total + weight * grad(x_ref + alpha * (x - x_ref)), None

        total, _ = jax.lax.scan(add, jnp.zeros_like(x), (jnp.asarray(alphas), jnp.asarray(weights)))
        return total

    attributions: np.ndarray = np.asarray(average_gradient(xs, reference)) * (xs - reference)
    return attributions


def _evaluate(scalar: Callable[..., Array], variants: np.ndarray, rows: np.ndarray, chunk_size: int) -> np.ndarray:
    """``scalar`` on many input rows ``[N, T, D]``, ``chunk_size`` rows per call of one compiled program."""
    compiled = jax.jit(scalar)
    out = []
    for start in range(0, len(variants), chunk_size):
        chunk, chunk_rows = variants[start : start + chunk_size], rows[start : start + chunk_size]
        short = chunk_size - len(chunk)
        if short:  # every call the same shape: one compile, whatever sizes the caller asks for
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, 0)])
            chunk_rows = np.concatenate([chunk_rows, np.repeat(chunk_rows[-1:], short)])
        out.append(np.asarray(compiled(chunk, chunk_rows))[: chunk_size - short])
    return np.concatenate(out)


def _occlusion(
    scalar: Callable[..., Array], xs: np.ndarray, reference: np.ndarray, window: int, chunk_size: int
) -> np.ndarray:
    B, T, D = xs.shape
    starts = np.arange(T - window + 1)
    occluded = np.repeat(xs[None, None], len(starts), axis=0).repeat(D, axis=1)  # [W, D, B, T, D]
    for i, t in enumerate(starts):
        for d in range(D):
            occluded[i, d, :, t : t + window, d] = reference[:, t : t + window, d]
    rows = np.tile(np.arange(B), len(starts) * D)
    full = _evaluate(scalar, xs, np.arange(B), chunk_size)
    occluded_out = _evaluate(scalar, occluded.reshape(-1, T, D), rows, chunk_size).reshape(len(starts), D, B)
    drops = full[None, None] - occluded_out
    attributions = np.zeros((B, T, D), xs.dtype)
    covered = np.zeros(T)
    for i, t in enumerate(starts):
        attributions[:, t : t + window] += (drops[i].T / window)[:, None, :]
        covered[t : t + window] += 1
    return attributions / covered[None, :, None]


def _shap(
    scalar: Callable[..., Array],
    xs: np.ndarray,
    reference: np.ndarray,
    max_evals: int | None,
    seed: int,
    chunk_size: int,
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # shap 0.51's import calls matplotlib's Colormap.set_bad, which matplotlib 3.10 marks as pending removal.
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap
    except ImportError:
        raise ImportError(
            'method="shap" needs the shap package: pip install "recurrax[interpret]" (or pip install shap)'
        ) from None
    B, T, D = xs.shape
    players = T * D
    evals = 10 * (2 * players + 1) if max_evals is None else max_evals
    if evals < 2 * players + 1:
        raise ValueError(f"max_evals must be at least 2·T·D + 1 = {2 * players + 1} (one permutation), got {evals}")
    attributions = np.zeros((B, T, D), np.float64)
    for b in range(B):
        x_b, ref_b = xs[b], reference[b]

        def predict(present: np.ndarray, x_b: np.ndarray = x_b, ref_b: np.ndarray = ref_b, b: int = b) -> np.ndarray:
            # A coalition: present players keep the example's value, absent ones take the baseline's.
            mask = present.reshape(-1, T, D).astype(bool)
            variants = np.where(mask, x_b[None], ref_b[None]).astype(xs.dtype)
            return _evaluate(scalar, variants, np.full(len(variants), b), chunk_size).astype(np.float64)

        explainer = shap.PermutationExplainer(predict, np.zeros((1, players)), seed=seed)
        result = explainer(np.ones((1, players)), max_evals=evals, silent=True)
        attributions[b] = np.asarray(result.values).reshape(T, D)
    return attributions.astype(xs.dtype)
