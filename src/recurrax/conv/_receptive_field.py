"""How far back a stack of convolutions sees."""

from __future__ import annotations

from collections.abc import Sequence

from recurrax._validation import check_positive_int


def receptive_field(kernel_sizes: int | Sequence[int], dilations: Sequence[int]) -> int:
    """Input steps that one output of a chain of stride-1 convolutions depends on.

    For convolutions ``i = 1..L`` with kernel sizes ``k_i`` and dilations ``d_i``::

        receptive_field = 1 + Σ_i (k_i - 1) · d_i

    A causal chain's output at ``t`` sees inputs ``t - receptive_field + 1 … t``.
    A TCN block has two convolutions with the same dilation, so a TCN with
    dilations ``1, 2, …, 2^(L-1)`` and kernel ``k`` sees ``1 + 2 (k - 1)(2^L - 1)``.

    Args:
      kernel_sizes: one kernel size per convolution, or one for all of them.
      dilations: one dilation per convolution.

    Example:
      >>> from recurrax.conv import receptive_field
      >>> receptive_field(3, [1, 1, 2, 2, 4, 4])     # a 3-level TCN with kernel 3
      29
    """
    dilations = [check_positive_int(d, f"dilations[{i}]") for i, d in enumerate(dilations)]
    if isinstance(kernel_sizes, int):
        kernel_sizes = [kernel_sizes] * len(dilations)
    kernel_sizes = [check_positive_int(k, f"kernel_sizes[{i}]") for i, k in enumerate(kernel_sizes)]
    if len(kernel_sizes) != len(dilations):
        raise ValueError(
            f"kernel_sizes and dilations must have one entry per convolution, got {len(kernel_sizes)} "
            f"and {len(dilations)}"
        )
    return 1 + sum((k - 1) * d for k, d in zip(kernel_sizes, dilations, strict=True))
