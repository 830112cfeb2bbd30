"""Market policies, registered by name. Each is a pure function with a docstring citing its source."""

from __future__ import annotations

# Importing the modules registers their policies.
from orchestrator.core.policy import auto as _auto  # noqa: F401
from orchestrator.core.policy import simple as _simple  # noqa: F401
from orchestrator.core.policy.base import Choice, Policy, Situation, SpotHistory
from orchestrator.core.policy.registry import get_policy, has_policy, policy_names, register

__all__ = ["Choice", "Policy", "Situation", "SpotHistory", "get_policy", "has_policy", "policy_names", "register"]
