"""Google Compute Engine provider (google-cloud-compute): offers, launches and observation.

Import `providers.gcp.provider` for the adapter; the package itself imports nothing so that a
missing `orch[gcp]` extra costs nothing until GCP is used."""
