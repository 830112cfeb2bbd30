"""Checkpoint storage shares one cloud client per process and credential chain (not one per task)."""

from __future__ import annotations

import pytest

from orchestrator.job.checkpoint.s3 import S3Storage


def test_s3_storages_share_one_client_until_the_chain_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ORCH_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    a, b = S3Storage("s3://bucket/job-1/t0"), S3Storage("s3://other/job-2/t3")
    assert a._client is b._client
    monkeypatch.setenv("ORCH_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    assert S3Storage("s3://bucket/job-1/t0")._client is not a._client
    monkeypatch.setenv("ORCH_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert S3Storage("s3://bucket/job-1/t0")._client is not a._client
