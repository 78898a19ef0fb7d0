"""One module per implementation family; each exposes ``build(cell, mode, cfg, xs, **options) -> list[Impl]``.

``PEERS`` is the order in which the harness builds and reports them. A module
whose framework is not installed raises ImportError and is reported as skipped.
"""

PEERS = ("floor", "recurrax_peer", "flax_nnx", "flax_linen", "equinox_peer", "haiku_peer", "keras_peer", "torch_peer")
