"""`orch dashboard`: the read-only web page, started with the very functions behind `orch status --json`.

This module is the composition root for the dashboard: it hands `orchestrator.dashboard` the CLI's
own status, campaign, provider and log functions (`cli_source`), so the page and the CLI cannot
disagree. Nothing heavy is imported until the command runs (`orch --help` stays fast).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from orchestrator.cli.args import bounded_int
from orchestrator.cli.errors import CliError

if TYPE_CHECKING:
    from orchestrator.dashboard.source import Source


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("dashboard", help="serve a read-only web page of the jobs (docs/dashboard.md)",
                       description="Serve the jobs and each job's timeline, cost, events and logs as a web page "
                                   "that refreshes itself. Read-only. On 127.0.0.1 by default; any other address "
                                   "needs a token.")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=bounded_int(0, 65535), default=8765,
                   help="port to listen on (default 8765; 0: any free port, printed)")
    d.add_argument("--token", default=None,
                   help="bearer token every request must carry (default $ORCH_DASHBOARD_TOKEN); required "
                        "when --host is not a loopback address")
    d.set_defaults(func=cmd_dashboard)


def cli_source() -> Source:
    """The read side of the CLI, as the dashboard takes it."""
    from orchestrator.cli import logs, status, wiring
    from orchestrator.dashboard.source import Source

    return Source(open_store=wiring.open_store, statuses=status.statuses_now, campaign=status.campaign_now,
                  providers=wiring.build_providers, read_log=logs.read_log, job_json=status.job_json,
                  list_json=status.list_json)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from orchestrator.dashboard.server import TOKEN_ENV, DashboardError, serve

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    try:
        serve(cli_source(), host=args.host, port=args.port, token=token)
    except DashboardError as exc:
        raise CliError(str(exc)) from exc
    return 0
