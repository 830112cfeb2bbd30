"""`orch dashboard`: a read-only web page over the store, for people who would rather see than read tables.

It reads the very functions behind `orch status --json` (handed in by the CLI, the composition root:
`orchestrator.dashboard.source.Source`), so the page and the CLI cannot disagree about money; it
derives nothing about cost itself. Starlette and uvicorn are the `dashboard` extra, imported only when
the server starts. docs/dashboard.md.
"""
