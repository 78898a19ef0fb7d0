"""recurrax benchmarks: peers side by side, the recurrent-matmul floor, scaling and compile time.

Run ``python -m benchmarks.run`` from the repository root (see ``benchmarks/README.md``).
"""
