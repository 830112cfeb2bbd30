"""Egress between regions is recorded data in the catalog: the move cost's transfer term reads it."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import pytest

from orchestrator.research.traces import Trace
from providers.catalog import _parse, load_catalog
from providers.sim import SimClock, SimProvider
from vocab import Market, Resources


def test_aws_prices_by_source_region_and_pair() -> None:
    c = load_catalog()
    assert c.egress_usd_per_gb("aws", "us-east-1", "us-east-1") == 0.0
    assert c.egress_usd_per_gb("aws", "us-east-1", "us-east-2") == c.egress_usd_per_gb("aws", "us-east-2",
                                                                                          "us-east-1") == 0.01
    assert c.egress_usd_per_gb("aws", "us-east-1", "us-west-2") == 0.02
    assert c.egress_usd_per_gb("aws", "us-east-1", "eu-west-1") == 0.02
    # AWS charges by the source region: out of Sao Paulo costs more than into it.
    assert c.egress_usd_per_gb("aws", "sa-east-1", "us-east-1") == 0.138
    assert c.egress_usd_per_gb("aws", "us-east-1", "sa-east-1") == 0.02


def test_gcp_prices_by_continent() -> None:
    c = load_catalog()
    assert c.egress_usd_per_gb("gcp", "us-east4", "us-west1") == 0.02
    assert c.egress_usd_per_gb("gcp", "us-east4", "northamerica-northeast1") == 0.02
    assert c.egress_usd_per_gb("gcp", "us-central1", "europe-west3") == 0.08
    assert c.egress_usd_per_gb("gcp", "asia-south2", "asia-southeast1") == 0.02
    assert c.continent("europe-west1") == c.continent("eu-west-1") == "europe"


def test_a_provider_without_prices_has_none() -> None:
    assert load_catalog().egress_usd_per_gb("local", "a", "b") is None
    assert load_catalog().egress_usd_per_gb("local", "a", "a") == 0.0


def test_sim_and_local_offers_take_their_instance_types_provider() -> None:
    """A sim offer is a catalog AWS type in a (GCP-named) region: its egress is AWS's."""
    clock = SimClock(0.0)
    sim = SimProvider(clock, {"us-east4-a": Trace(600.0, (1,))}, zone_regions={"us-east4-a": "us-east4"})
    offer = next(o for o in sim.offers(Resources(), []) if o.market is Market.SPOT)
    assert load_catalog().offer_egress_usd_per_gb(offer, "europe-west1") == 0.02  # AWS: 0.02 from a US region
    gcp = dataclasses.replace(offer, provider="gcp")
    assert load_catalog().offer_egress_usd_per_gb(gcp, "europe-west1") == 0.08


def test_the_file_is_what_the_catalog_reads() -> None:
    """Every provider table in the file parses, and a change to the file changes the answer (no
    figure lives in code)."""
    doc = json.loads(resources.files("providers").joinpath("data/catalog.json").read_text())
    assert set(doc["egress"]) == {"about", "continents", "aws", "gcp"}
    doc["egress"]["gcp"]["between_continents"] = 0.5
    assert _parse(doc).egress_usd_per_gb("gcp", "us-east4", "europe-west1") == pytest.approx(0.5)
