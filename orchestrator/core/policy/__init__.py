"""Market policies, registered by name. Each is a pure function with a docstring citing its source."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.core.policy.base import Choice, Policy, Situation, SpotHistory

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


# Importing the modules registers their policies.
from orchestrator.core.policy import auto as _auto  # noqa: E402,F401
from orchestrator.core.policy import simple as _simple  # noqa: E402,F401

__all__ = ["Choice", "Policy", "Situation", "SpotHistory", "get_policy", "has_policy", "policy_names", "register"]
