"""The local provider: runs jobs as processes on this machine under a simulated spot market."""
