"""The XLA flags the tests compile with (tests/conftest.py, and notebooks/execute.py --check for its kernels).

The tests' tiny programs are dominated by XLA compile time, not run time: skip
the expensive backend passes. No fast-math, but results can differ from the
default flags in the last bits (other fusions and instruction orders); every
tolerance in the suite holds with either.
"""

from __future__ import annotations

from importlib.metadata import version

# One LLVM module per program, not split for parallel codegen: the test processes already fill the
# cores, and the split's threads cost ~5 % more CPU (tests/train, tests/attention, tests/nn on
# 2 workers: 98 → 91 user CPU-s on jaxlib 0.10.2; docs/training.md's backend compile 8.6 → 7.4 s on 0.12).
_ALWAYS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_parallel_codegen_split_count=1"
)
# XLA:CPU's fusion emitters (MLIR) compile each program about twice as slowly as the older
# emitters: docs/training.md's 149 compiles took 10.5 s of backend compile with them and 4.7 s
# without (jaxlib 0.10.2, 2 cores), the page 22.9 → 14.1 CPU-s. jaxlib 0.12 has no other emitters
# and rejects the flag (an unknown XLA flag aborts the process), so it is set for the versions
# that were measured to take it.
_OLD_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _release(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version(name).split(".")[:2] if part.isdigit())


def xla_flags() -> str:
    """``XLA_FLAGS`` for a cheap compile with the installed jaxlib."""
    return f"{_ALWAYS} {_OLD_EMITTERS}" if _release("jaxlib") < (0, 11) else _ALWAYS
