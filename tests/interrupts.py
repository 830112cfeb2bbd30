"""For tests that press Ctrl-C on a command: the command must hear SIGINT as it would at a terminal.

A process started in the background by a shell without job control (`cmd &` in a script, `nohup`)
inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: a test that sends
SIGINT would wait for nothing. The child gets the default disposition back before it runs, whatever
started the test run.
"""

from __future__ import annotations

import signal


def as_at_a_terminal() -> None:
    """`preexec_fn` for `subprocess.Popen`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
