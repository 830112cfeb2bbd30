"""The loop's decisions as data: one task's facts in, typed actions out, with no I/O.

`task.plan_task` holds the rules a tick applies to a task (its docstring lists them in order),
`launch` the rules around a launch's answer, `progress` what a progress read means. The loop gathers
the facts, runs the plan, and carries the actions out (`orchestrator.loop.act`); see
docs/architecture.md.
"""
