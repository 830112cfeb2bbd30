"""The gang half of the `Provider` contract (`LaunchesGangs`), run against every provider.

A provider either says it launches no gangs (`max_gang_nodes` 1, and `launch_nodes` refuses a gang
for it before anything is asked of the cloud) or launches N nodes as one: one instance per rank,
each tagged with the attempt and its rank, listed once, and the same gang again on a repeated launch.
"""

from __future__ import annotations

import dataclasses

import pytest

from providers.base import LaunchesGangs, launch_nodes
from tests import test_conformance
from tests.conformance_support import World
from tests.test_conformance import request_for
from vocab import LaunchRequest, PermanentError

# The suite's fixture (every provider), bound here so pytest finds it for this module's tests.
world = test_conformance.world


def gang_request(world: World, nodes: int, attempt: str = "conf-gang-1") -> LaunchRequest:
    return dataclasses.replace(request_for(world, attempt), nodes=nodes)


def test_a_provider_that_launches_gangs_says_so_and_has_the_method(world: World) -> None:
    limit = world.provider.abilities.max_gang_nodes
    assert limit >= 1
    assert (limit > 1) == isinstance(world.provider, LaunchesGangs)


def test_a_gang_is_one_instance_per_rank_and_a_repeated_launch_returns_it(world: World) -> None:
    if world.provider.abilities.max_gang_nodes < 3:
        with pytest.raises(PermanentError, match="cannot launch 3 nodes as one gang"):
            launch_nodes(world.provider, gang_request(world, 3))
        assert [i for i in world.provider.instances() if i.alive] == []
        return
    gang = launch_nodes(world.provider, gang_request(world, 3))
    assert [i.node_rank for i in gang] == [0, 1, 2]
    assert {i.attempt_id for i in gang} == {"conf-gang-1"} and len({i.instance_id for i in gang}) == 3
    assert all(i.alive and i.job_id == "conf-job" for i in gang), gang
    again = launch_nodes(world.provider, gang_request(world, 3))
    assert [i.instance_id for i in again] == [i.instance_id for i in gang], "a second gang was made"
    listed = sorted((i for i in world.provider.instances() if i.attempt_id == "conf-gang-1"),
                    key=lambda i: i.node_rank)
    assert [(i.instance_id, i.node_rank) for i in listed] == [(i.instance_id, i.node_rank) for i in gang]
    for inst in gang:
        world.provider.terminate(inst)


def test_a_gang_larger_than_the_provider_holds_is_refused_before_any_launch(world: World) -> None:
    too_many = world.provider.abilities.max_gang_nodes + 1
    with pytest.raises(PermanentError, match=f"cannot launch {too_many} nodes as one gang"):
        launch_nodes(world.provider, gang_request(world, too_many))
    assert [i for i in world.provider.instances() if i.alive] == []
