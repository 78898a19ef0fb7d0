"""Seeing inside a recurrent model: attributions over time, its dynamics and recordings of its internals.

* :func:`explain` — ``[B, T, D]`` attributions of one output per example to every
  input step and feature: gradient × input, integrated gradients, occlusion, SHAP
  (:func:`model_output` gives the output they explain); :func:`plot_attributions`
  draws them under the input sequence, :func:`plot_attention` an attention layer's
  weights per head.

* :func:`recurrent_jacobians`, :func:`jacobian_singular_values` — ``∂state_t/∂state_{t−1}``
  along a trajectory and its spectrum (vanishing and exploding gradients, step by step).
* :func:`lyapunov_exponent` — the trajectory's largest Lyapunov exponent.
* :func:`fixed_points` — fixed and slow points of the autonomous dynamics, with
  their linearised stability (:class:`FixedPoints`).
* :func:`state_trajectory`, :func:`pca_trajectories` — the visited states in
  principal-component coordinates (:class:`PCA`).
* :func:`plot_jacobian_spectrum`, :func:`plot_pca_trajectories` — figures
  (matplotlib, imported only when a plot is made).

* :func:`plot_recording` — a heatmap of one recorded internal (a gate, the cell
  state) over time, from ``recurrax.scan(..., record=True)`` or ``recurrax.nn.recording()``.
* :func:`gate_statistics`, :class:`GateStatistics` — saturated gates, the memory the
  keep gate implies and the state's norm per layer; the callback logs them into the history.

Every function takes a pure cell and its parameters; for a ``recurrax.nn``
layer pass ``layer.cell`` and ``layer.pure_params()``. See docs/interpretability.md.
"""

from recurrax.interpret._attribution import METHODS, explain, model_output
from recurrax.interpret._attribution_plots import plot_attention, plot_attributions
from recurrax.interpret._dynamics import (
    PCA,
    FixedPoints,
    fixed_points,
    jacobian_singular_values,
    lyapunov_exponent,
    pca_trajectories,
    recurrent_jacobians,
    state_trajectory,
)
from recurrax.interpret._dynamics_plots import plot_jacobian_spectrum, plot_pca_trajectories
from recurrax.interpret._gate_statistics import GateStatistics, gate_statistics
from recurrax.interpret._recording_plots import plot_recording

__all__ = [
    "METHODS",
    "PCA",
    "FixedPoints",
    "GateStatistics",
    "explain",
    "fixed_points",
    "gate_statistics",
    "jacobian_singular_values",
    "lyapunov_exponent",
    "model_output",
    "pca_trajectories",
    "plot_attention",
    "plot_attributions",
    "plot_jacobian_spectrum",
    "plot_pca_trajectories",
    "plot_recording",
    "recurrent_jacobians",
    "state_trajectory",
]
