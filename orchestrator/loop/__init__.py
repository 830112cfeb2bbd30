"""The live loop: snapshot the store, plan with the pure core, act through providers, record.

Only this package (and the entry points above it) joins the store, the providers and the core.
"""
