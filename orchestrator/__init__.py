"""orch: GPU jobs on spot capacity, on time and on budget."""
