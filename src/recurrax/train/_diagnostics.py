"""Gradient diagnostics computed inside the jitted step: a few norms, no host syncs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recurrax.train._optimizers import NORM_AFTER_CLIP, NORM_BEFORE_CLIP

Array = jax.Array
_CONTAINERS = tuple(t for t in (getattr(nnx, "List", None), getattr(nnx, "Dict", None)) if t is not None)


def layer_names(model: nnx.Module) -> list[str]:
    """One layer name per parameter leaf, in ``jax.tree.leaves(nnx.state(model, nnx.Param))`` order.

    A parameter belongs to the innermost module that owns it (``nnx.List`` and
    ``nnx.Dict`` containers skipped), named by its path: ``"rnn"``,
    ``"stack/layers/0"``, ``"head"``; parameters of the top module are ``"root"``.
    """
    modules = [tuple(path) for path, module in nnx.iter_modules(model) if not isinstance(module, _CONTAINERS)]
    state = nnx.as_pure(nnx.state(model, nnx.Param))
    names = []
    for key_path, _ in jax.tree_util.tree_flatten_with_path(state)[0]:
        path = tuple(_key(k) for k in key_path)
        owner = max((m for m in modules if path[: len(m)] == m), key=len, default=())
        names.append("/".join(str(k) for k in owner) or "root")
    return names


def gradient_diagnostics(
    grads: Any,
    updates: Any,
    params: Any,
    opt_state: Any,
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, Array]:
    """Step diagnostics as scalars, cheap enough for every step of a jitted loop.

    Args:
      grads: this step's raw gradient (before the optimizer).
      updates: what the optimizer returned (added to the parameters).
      params: the parameters after the update.
      opt_state: the optimizer state after the update.
      layers: one layer name per leaf of ``grads`` (see :func:`layer_names`)
        for per-layer gradient norms.

    Returns:
      ``grad_norm`` (global ‖g‖ of ``grads``), ``update_norm``, ``param_norm``,
      ``nonfinite`` (1.0 when ``grads`` holds a NaN or Inf), ``grad_norm/<layer>``
      per layer; and, when ``opt_state`` comes from :func:`build_optimizer`,
      ``clipped_grad_norm`` (‖g‖ after clipping) and ``clipped`` (1.0 when
      clipping changed the gradient) for the gradient of the latest optimizer
      update (with accumulation: the accumulated one), and with
      ``skip_nonfinite`` ``nonfinite_count`` (skipped steps so far); with
      :func:`~recurrax.train.dynamic_loss_scale`, ``loss_scale`` (the scale
      after this step) and ``loss_scale_skipped`` (overflowed steps skipped so far).

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.train import build_optimizer
      >>> tx = build_optimizer("sgd", 1.0, clip_norm=1.0)
      >>> params = {"w": jnp.zeros(2)}
      >>> grads = {"w": jnp.array([3.0, 4.0])}
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> d = gradient_diagnostics(grads, updates, params, state)
      >>> float(d["grad_norm"]), float(d["clipped_grad_norm"]), float(d["clipped"])
      (5.0, 1.0, 1.0)
    """
    leaves = jax.tree.leaves(grads)
    out = {
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(params),
        "nonfinite": 1.0 - jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in leaves])).astype(jnp.float32),
    }
    before = optax.tree.get(opt_state, NORM_BEFORE_CLIP)
    after = optax.tree.get(opt_state, NORM_AFTER_CLIP)
    if before is not None and after is not None:
        out["clipped_grad_norm"] = after
        # Clipping leaves an unclipped gradient bit-identical, so any change means it clipped.
        out["clipped"] = (after != before).astype(jnp.float32)
    skipped = optax.tree.get(opt_state, "total_notfinite")
    if skipped is not None:
        out["nonfinite_count"] = skipped
    scale = optax.tree.get(opt_state, "loss_scale")
    if scale is not None:  # dynamic_loss_scale: the scale for the next step, and overflowed steps skipped so far
        out["loss_scale"] = scale
        out["loss_scale_skipped"] = optax.tree.get(opt_state, "loss_scale_skipped")
    if layers is not None:
        if len(layers) != len(leaves):
            raise ValueError(f"layers has {len(layers)} names but grads has {len(leaves)} leaves")
        squares: dict[str, list[Array]] = {}
        for name, g in zip(layers, leaves, strict=True):
            squares.setdefault(name, []).append(jnp.sum(jnp.square(g.astype(jnp.promote_types(g.dtype, jnp.float32)))))
        for name, parts in squares.items():
            out[f"grad_norm/{name}"] = jnp.sqrt(sum(parts[1:], parts[0]))
    return out


def _key(entry: Any) -> Any:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return str(entry)
