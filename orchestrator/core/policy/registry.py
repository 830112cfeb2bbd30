"""The policies by name. A module of its own so that each policy module registers itself here without
importing the package that imports it (`orchestrator.core.policy` imports every policy module)."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.policy.base import Policy

_REGISTRY: dict[str, Policy] = {}


def register(name: str) -> Callable[[Policy], Policy]:
    def add(fn: Policy) -> Policy:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return add


def get_policy(name: str) -> Policy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no policy named {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def has_policy(name: str) -> bool:
    return name in _REGISTRY
