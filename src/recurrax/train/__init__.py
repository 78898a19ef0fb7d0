"""Training with optax: optimizers, gradient diagnostics, gradient flow, a fit loop, checkpoints.

* :func:`build_optimizer` — a plain ``optax.GradientTransformation`` with
  clipping, gradient accumulation and a non-finite guard, all optax parts.
* :func:`gradient_diagnostics` — per-step norms inside the jitted step.
* :func:`gradient_flow` — ‖∂L/∂h_t‖ for every step and recurrent layer.
* :class:`Trainer`, :func:`fit`, :func:`evaluate`, :func:`predict` — the loop,
  with truncated BPTT (:func:`tbptt_value_and_grad`), callbacks and history.
* :class:`Checkpointer`, :func:`restore_model` — orbax checkpoints (asynchronous in ``fit``), exact resume.
* :class:`GrainPipeline` — ``fit``'s batches through grain: prefetch, per-process shards, resumable.
* :func:`dynamic_loss_scale` — float16 loss scaling in the optimizer state
  (``Trainer(..., precision="fp16")`` adds it).
* :class:`Partitioning` — data parallel and FSDP training over a device mesh (``jax.sharding``);
  :func:`initialize_distributed` and :func:`global_mesh` — the same over several processes (``jax.distributed``);
  :func:`local_sgd` and :func:`diloco` — replicas that synchronise every ``H`` steps.
* :func:`plot_history`, :func:`plot_gradient_norms`, :func:`plot_gradient_flow` — PNG plots.
* :class:`TensorBoardWriter`, :class:`WandbWriter`, :class:`MLflowWriter` — metric
  writers (callbacks); :class:`MetricWriter` for another backend.

orbax and matplotlib are imported only when a checkpoint or a plot is made,
a writer's backend only when the writer is made. Messages go to the
``recurrax.train`` loggers (``logging``), never to stdout.
"""

from recurrax.train._callbacks import Callback, EarlyStopping, LambdaCallback
from recurrax.train._checkpoint import Checkpointer, CheckpointError, restore_model
from recurrax.train._data import BatchSource
from recurrax.train._diagnostics import gradient_diagnostics, layer_names
from recurrax.train._distributed import global_mesh, initialize_distributed
from recurrax.train._gradient_flow import GradientFlowRecorder, gradient_flow
from recurrax.train._history import History
from recurrax.train._local_sgd import LocalSGD, LocalSGDState, ReplicaState, diloco, local_sgd
from recurrax.train._loss_scale import LossScaleState, dynamic_loss_scale
from recurrax.train._losses import (
    accuracy,
    binary_accuracy,
    binary_cross_entropy_with_logits,
    masked_total,
    mse,
    sequence_mask,
    softmax_cross_entropy,
)
from recurrax.train._objective import Objective
from recurrax.train._optimizers import build_optimizer
from recurrax.train._partitioning import Partitioning
from recurrax.train._pipeline import GrainPipeline
from recurrax.train._plots import plot_gradient_flow, plot_gradient_norms, plot_history
from recurrax.train._tbptt import tbptt_value_and_grad
from recurrax.train._trainer import Trainer, evaluate, fit, predict
from recurrax.train._writers import MetricWriter, MLflowWriter, TensorBoardWriter, WandbWriter

__all__ = [
    "BatchSource",
    "Callback",
    "CheckpointError",
    "Checkpointer",
    "EarlyStopping",
    "GradientFlowRecorder",
    "GrainPipeline",
    "History",
    "LambdaCallback",
    "LocalSGD",
    "LocalSGDState",
    "LossScaleState",
    "MLflowWriter",
    "MetricWriter",
    "Objective",
    "Partitioning",
    "ReplicaState",
    "TensorBoardWriter",
    "Trainer",
    "WandbWriter",
    "accuracy",
    "binary_accuracy",
    "binary_cross_entropy_with_logits",
    "build_optimizer",
    "diloco",
    "dynamic_loss_scale",
    "evaluate",
    "fit",
    "global_mesh",
    "gradient_diagnostics",
    "gradient_flow",
    "initialize_distributed",
    "layer_names",
    "local_sgd",
    "masked_total",
    "mse",
    "plot_gradient_flow",
    "plot_gradient_norms",
    "plot_history",
    "predict",
    "restore_model",
    "sequence_mask",
    "softmax_cross_entropy",
    "tbptt_value_and_grad",
]
