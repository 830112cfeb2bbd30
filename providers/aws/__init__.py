"""AWS EC2 provider (boto3): offers, launches, observation, and spot interruption notices.

Import `providers.aws.provider` for the adapter; the package itself imports nothing so that a
missing `orch[aws]` extra costs nothing until AWS is used."""
