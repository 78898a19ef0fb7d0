"""``ParamModule``: the one base of recurrax's Flax NNX modules — it owns the parameters a pure ``init`` made."""

from __future__ import annotations

import inspect
from typing import Any

import jax
from flax import nnx

from recurrax._types import Array, Params


def values(tree: Any) -> Any:
    """The arrays inside a pytree of ``nnx.Variable``s."""
    return jax.tree.map(lambda v: v[...], tree, is_leaf=lambda v: isinstance(v, nnx.Variable))


class ParamModule(nnx.Module):
    """Owns the ``nnx.Param``\\ s of a pure cell or block and adds no math.

    ``params`` (made by the pure ``init``) become ``self.params``, a pytree of
    ``nnx.Param`` with the pure names; :meth:`pure_params` gives them back as
    the plain pytree the pure functions take. Randomness (dropout, recurrent
    dropout, zoneout) is on unless ``deterministic`` (``model.eval()`` sets it,
    ``model.train()`` clears it) and draws from the ``"dropout"`` stream of
    the ``rngs`` given at construction (the default stream if it has none).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # help() and editors show the constructor's signature (NNX's metaclass call would hide it).
        if "__init__" in cls.__dict__:
            signature = inspect.signature(cls.__init__)
            # inspect reads __signature__; typeshed declares it on no class, hence the ignore.
            cls.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]

    def __init__(self, params: Params, *, rngs: nnx.Rngs, stochastic: bool, deterministic: bool = False) -> None:
        check_rngs(rngs)
        self.params = nnx.data(jax.tree.map(nnx.Param, params))
        self.deterministic = bool(deterministic)
        self.dropout_rngs = rngs["dropout"].fork() if stochastic else nnx.data(None)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view(model, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def pure_params(self) -> Params:
        """The parameters as the plain pytree that the pure functions take."""
        return values(self.params)

    def dropout_key(self) -> Array | None:
        """A fresh key when randomness is active, else None (the pure functions' convention)."""
        if self.deterministic or self.dropout_rngs is None:
            return None
        key: Array = self.dropout_rngs()
        return key


def check_rngs(rngs: Any) -> None:
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs, got {type(rngs).__name__}")


class BlockModule(ParamModule):
    """A :class:`ParamModule` for a pure block (``spec.init`` / ``spec.apply``): ``make(key) -> params``
    runs once, compiled (one compile instead of one per initialiser), and ``spec`` is kept for the calls."""

    def __init__(self, spec: Any, make: Any, *, rngs: nnx.Rngs, stochastic: bool, deterministic: bool = False) -> None:
        check_rngs(rngs)
        params = jax.jit(make)(rngs.params())
        self.spec = spec
        super().__init__(params, rngs=rngs, stochastic=stochastic, deterministic=deterministic)
