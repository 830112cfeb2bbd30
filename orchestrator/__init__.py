"""orch: GPU jobs on spot capacity, on time and on budget."""

# The fallback for `orch --version` when orch runs from a source tree that pip did not install;
# the installed version comes from the package metadata (pyproject.toml).
__version__ = "0.1.0"
