"""The pure core: the job spec, the domain model, cost, status, placement, policy and the decision rules.

Nothing here does I/O (no store, no SDK, no clock): every function takes what it needs as values,
so the live loop, `orch simulate` and the benchmarks run the same rules. import-linter enforces it.
"""
