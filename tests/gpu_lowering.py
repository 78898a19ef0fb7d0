"""Lowering Pallas's Triton kernels for a CUDA GPU on a machine without one (cross-platform lowering).

jax < 0.12 lowers for ``"cuda"`` with no GPU present; jax 0.12 first asks
which GPU the kernel is for (its compute capability picks the Triton
lowering), and takes the answer from an abstract mesh's device. This names
the H200 that ``benchmarks/run_gpu.sh`` ran on, so both stacks check the
same target. jax 0.12 also deprecates the Triton backend with a warning
(``docs/kernels.md`` says what that means here), silenced here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import jax

#: The GPU the kernels are lowered for (jax >= 0.12): the benchmark runs' device kind.
DEVICE_KIND = "NVIDIA H200"


@contextlib.contextmanager
def for_a_cuda_gpu() -> Iterator[None]:
    """Inside: ``.lower(lowering_platforms=("cuda",))`` lowers Pallas's Triton kernels for :data:`DEVICE_KIND`."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", "The Pallas Triton backend is deprecated", DeprecationWarning)
        abstract_device = getattr(jax.sharding, "AbstractDevice", None)
        if abstract_device is not None:
            device = abstract_device(device_kind=DEVICE_KIND, num_cores=None, platform="cuda")
            mesh = jax.sharding.AbstractMesh((1,), ("gpu",), abstract_device=device)
            stack.enter_context(jax.sharding.use_abstract_mesh(mesh))
        yield
