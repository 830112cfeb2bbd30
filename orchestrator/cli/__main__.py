"""`python -m orchestrator.cli`: the same entry point as the `orch` script, for a source tree pip never installed."""

import sys

from orchestrator.cli.main import main

sys.exit(main())
