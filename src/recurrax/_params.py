"""Parameters checked against what a cell's ``init`` makes: by structure and shape, once per trace, naming the leaf."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from recurrax._types import Params, tree_structure

if TYPE_CHECKING:
    from recurrax._cell import Cell


def _abstract_init(cell: Cell, in_features: int) -> Any:
    # The key is made inside eval_shape, so none of its ops lands in a surrounding trace.
    return jax.eval_shape(lambda: cell.init(jax.random.key(0), in_features))


_cached_abstract_init = functools.lru_cache(maxsize=256)(_abstract_init)


def expected_params(cell: Cell, in_features: int) -> Any:
    """The parameter shapes (``jax.ShapeDtypeStruct`` leaves) that ``cell.init`` makes for ``in_features``."""
    try:
        return _cached_abstract_init(cell, in_features)
    except TypeError as err:  # an unhashable cell (a field holding a list, say): not cached
        if "unhashable" not in str(err):
            raise
        return _abstract_init(cell, in_features)


def params_in_features(cell: Cell, params: Params) -> int | None:
    """The input width ``D`` for which ``cell.init`` makes parameters shaped like ``params`` (None: no such D).

    Asks :meth:`Cell.in_features_of`, whose default is :func:`search_in_features`.
    """
    return cell.in_features_of(params)


def search_in_features(cell: Cell, params: Params) -> int | None:
    """Tries every dimension of ``params``' leaves, and their pairwise products, as the input width."""
    dims = sorted({int(d) for leaf in jax.tree.leaves(params) for d in jnp.shape(leaf) if d > 0})
    candidates = sorted({*dims, *(a * b for a in dims for b in dims)})
    for d in candidates:
        if _shapes_match(cell, params, d):
            return d
    return None


def _shapes_match(cell: Cell, params: Params, in_features: int) -> bool:
    try:
        expected = expected_params(cell, in_features)
    except Exception:  # noqa: BLE001 — a width the cell's init refuses is simply not the answer
        return False
    return _difference(params, expected) is None


def _difference(params: Params, expected: Any) -> str | tuple[str, tuple[int, ...], tuple[int, ...]] | None:
    """How ``params`` differs from ``expected``: ``None`` (not at all), a structure description, or the
    first leaf whose shape differs as ``(name, shape, expected shape)``."""
    got_paths, want_paths = (
        jax.tree_util.tree_flatten_with_path(params)[0],
        jax.tree_util.tree_flatten_with_path(expected)[0],
    )
    got_tree, want_tree = tree_structure(params), tree_structure(expected)
    if got_tree != want_tree:
        got = sorted(_leaf_name(p) for p, _ in got_paths)
        want = sorted(_leaf_name(p) for p, _ in want_paths)
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        detail = "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "") if part
        )
        return detail or f"got {got_tree}"
    for (path, got), (_, want) in zip(got_paths, want_paths, strict=True):
        if tuple(jnp.shape(got)) != tuple(want.shape):
            return _leaf_name(path), tuple(jnp.shape(got)), tuple(want.shape)
    return None


def check_params(cell: Cell, params: Params, in_features: int, name: str = "params") -> None:
    """Raises unless ``params`` has the structure and shapes ``cell.init`` makes for ``in_features`` inputs.

    Runs once per trace (shapes only), so it costs nothing inside a compiled step.
    """
    cell_name = type(cell).__name__
    if params is None:
        raise TypeError(f"{name} is None; make it with {cell_name}.init(key, in_features)")
    difference = _difference(params, expected_params(cell, in_features))
    if difference is None:
        return
    if isinstance(difference, str):
        raise ValueError(
            f"{name} do not have the structure {cell_name}.init makes ({difference}); were they made for another cell?"
        )
    leaf, got, want = difference
    made_for = params_in_features(cell, params)
    hint = (
        f"; the parameters were made for {made_for} input features, the input has {in_features}"
        if made_for is not None and made_for != in_features
        else ""
    )
    raise ValueError(
        f"{name}[{leaf!r}] has shape {got}, but {cell_name}.init makes {want} for inputs with {in_features} "
        f"features{hint}"
    )


def _leaf_name(path: tuple[Any, ...]) -> str:
    """``"input_kernel"`` or ``"cell/input_kernel"``: a leaf's path as the names a reader knows."""
    parts = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path]
    return "/".join(str(p) for p in parts)
