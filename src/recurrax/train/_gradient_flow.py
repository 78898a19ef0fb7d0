"""Gradient flow through time: ‖∂L/∂h_t‖ for every step t and every recurrent layer.

The loss is differentiated with respect to zero perturbations that
:func:`recurrax.nn.carry_probe` adds to each layer's carry through the scan
engine (``carry_perturbation``): the model's outputs are unchanged and the
gradient at step ``t`` is exactly ``∂L/∂carry_t``. Vanishing gradients show up
as norms that fall by orders of magnitude from the last step back to the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recurrax.train._callbacks import Callback
from recurrax.train._losses import ValueFn
from recurrax.train._objective import Batch, LossFn, Objective, ObjectiveFn, as_objective, stats_from_loss_fn

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer

Array = jax.Array


def gradient_flow(
    model: nnx.Module,
    batch: Batch,
    *,
    loss: str | ValueFn | Objective = "mse",
    loss_fn: LossFn | None = None,
    time_axis: int = 1,
) -> np.ndarray:
    """‖∂L/∂h_t‖ per recurrent layer and time step, ``[layers, T]``.

    The norm at ``t`` is over the whole carry entering step ``t`` (``h`` and
    ``c`` of an LSTM) and over the batch. Layers are the ``recurrax.nn``
    recurrent layer calls in call order (each direction of a bidirectional
    layer is one). The model runs in its current mode; call ``model.eval()``
    first for a measurement without dropout.

    Args:
      model: an NNX model built from ``recurrax.nn`` recurrent layers.
      batch: ``{"inputs": [B, T, D], "targets": ..., "lengths": ...}``.
      loss: the loss (as in :class:`~recurrax.train.Objective`).
      loss_fn: instead of ``loss``, any ``loss_fn(model, batch) -> loss | (loss, metrics)``.
      time_axis: the time axis of the stacked carries: 1 for batch-major
        layers with one batch dimension, 0 for time-major layers.

    Returns:
      A NumPy array ``[layers, T]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> model = nn.SimpleRNN(1, 4, rngs=nnx.Rngs(0))
      >>> batch = {"inputs": jnp.ones((2, 6, 1)), "targets": jnp.zeros((2, 6, 4))}
      >>> gradient_flow(model, batch).shape
      (1, 6)
    """
    objective = _objective_fn(loss, loss_fn)
    graphdef, state = nnx.split(model)
    batch = {k: jnp.asarray(v) for k, v in batch.items() if v is not None}
    return np.asarray(_flow_jit(graphdef, objective, time_axis, nnx.as_pure(state), batch))


def _objective_fn(loss: str | ValueFn | Objective, loss_fn: LossFn | None) -> ObjectiveFn:
    return as_objective(loss, ()) if loss_fn is None else stats_from_loss_fn(loss_fn)


def _flow(graphdef: nnx.GraphDef[Any], objective: ObjectiveFn, time_axis: int, state: Any, batch: Batch) -> Array:
    from recurrax.nn import carry_probe

    def probed_loss(perturbations: list[Any] | None, state: Any) -> tuple[Array, list[Any]]:
        model = nnx.merge(graphdef, state)
        with carry_probe(perturbations) as carries:
            loss, _ = objective(model, batch)
        return loss, carries

    carries = jax.eval_shape(lambda s: probed_loss(None, s)[1], state)
    if not carries:
        raise ValueError("gradient_flow found no recurrax.nn recurrent layer in the model's forward pass")
    zeros = [jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), c) for c in carries]
    grads = jax.grad(lambda p: probed_loss(p, state)[0])(zeros)
    per_layer = []
    for i, g in enumerate(grads):
        leaves = jax.tree.leaves(g)
        num_steps = {leaf.shape[time_axis] for leaf in leaves}
        if len(num_steps) != 1:
            raise ValueError(f"layer {i}'s carry leaves disagree on the time axis {time_axis}: sizes {num_steps}")
        # |g|, not g: a complex carry (LRU) has a gradient in its real and its imaginary part, and casting
        # it to float32 would silently drop the imaginary one. For a real leaf |g|² is g² exactly.
        squares = [
            jnp.sum(
                jnp.square(jnp.abs(jnp.moveaxis(leaf, time_axis, 0)).astype(jnp.float32)).reshape(
                    leaf.shape[time_axis], -1
                ),
                axis=1,
            )
            for leaf in leaves
        ]
        per_layer.append(jnp.sqrt(sum(squares[1:], squares[0])))
    lengths = {int(f.shape[0]) for f in per_layer}
    if len(lengths) != 1:
        raise ValueError(f"recurrent layers have different sequence lengths {sorted(lengths)}; cannot stack them")
    return jnp.stack(per_layer)


_flow_jit = jax.jit(_flow, static_argnums=(0, 1, 2))


class GradientFlowRecorder(Callback):
    """Records :func:`gradient_flow` on a fixed batch every ``every_steps`` steps of a fit.

    ``recorder.steps`` (``[S]``) and ``recorder.flows`` (``[S, layers, T]``)
    make the heatmap of :func:`~recurrax.train.plot_gradient_flow`: how the
    gradient reaching early time steps changes as training goes.

    Args:
      batch: the batch to measure on (keep it small).
      every_steps: the interval in optimizer steps (and once before the first step).
      time_axis: as in :func:`gradient_flow`.
    """

    def __init__(self, batch: Batch, *, every_steps: int = 10, time_axis: int = 1):
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(f"every_steps must be a positive int, got {every_steps!r}")
        self.batch = {k: jnp.asarray(v) for k, v in batch.items() if v is not None}
        self.every_steps, self.time_axis = every_steps, time_axis
        self._steps: list[int] = []
        self._flows: list[np.ndarray] = []
        self._last = -1

    @property
    def steps(self) -> np.ndarray:
        """The steps at which a measurement was taken, ``[S]``."""
        return np.asarray(self._steps, dtype=np.int64)

    @property
    def flows(self) -> np.ndarray:
        """The measurements, ``[S, layers, T]``."""
        return np.stack(self._flows) if self._flows else np.zeros((0, 0, 0), np.float32)

    def on_train_begin(self, trainer: Trainer) -> None:
        if not self._steps or self._steps[-1] != trainer.step:
            self._record(trainer)

    def on_step_end(self, trainer: Trainer, step: int, metrics: Mapping[str, Array]) -> None:
        if step // self.every_steps > self._last // self.every_steps:
            self._record(trainer)

    def _record(self, trainer: Trainer) -> None:
        model = trainer.sync_model()
        objective = trainer.objective if trainer.objective is not None else trainer._objective_fn
        graphdef, state = nnx.split(model)
        self._flows.append(np.asarray(_flow_jit(graphdef, objective, self.time_axis, nnx.as_pure(state), self.batch)))
        self._steps.append(trainer.step)
        self._last = trainer.step

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self._steps), "flows": [f.tolist() for f in self._flows], "last": self._last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._steps = [int(s) for s in state["steps"]]
        self._flows = [np.asarray(f, np.float32) for f in state["flows"]]
        self._last = int(state["last"])
