"""Research code: the vectorised policy simulator, the offline optimum and the trace readers.

It answers "how good is a policy?" over recorded spot traces and is kept apart from the live loop so
that benchmark-only needs (numpy-heavy sweeps, hindsight optima) never leak into what runs jobs.
"""
