"""The `orch` command line. `main` is the entry point; each subcommand lives in its own module and is
imported only when that subcommand runs, so `orch --help` stays fast."""
