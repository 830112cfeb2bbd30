"""EC2 placement groups for the moto server, which (5.2.1) does not serve them.

Installed into the in-process `ThreadedMotoServer`'s EC2 responses, so the provider is still tested
through the real boto3 client over HTTP: `CreatePlacementGroup` (duplicate names refused as EC2 does),
`DescribePlacementGroups`, `DeletePlacementGroup` (refused while an instance launched into the group is
not terminated, unknown names refused), and `RunInstances` into a group that must exist. The members
of a group are the instances a `RunInstances` naming it made, read from moto's own backend; their
states are moto's. `reset()` forgets every group (tests run on one server).
"""

from __future__ import annotations

import itertools
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response
from moto.ec2.responses.instances import InstanceResponse

_GROUPS: dict[tuple[str, str], dict[str, Any]] = {}
_MEMBERS: dict[tuple[str, str], set[str]] = {}
_IDS = itertools.count(1)
_ORIGINAL_RUN = InstanceResponse.run_instances


def reset() -> None:
    _GROUPS.clear()
    _MEMBERS.clear()


def groups(region: str) -> dict[str, dict[str, Any]]:
    """The groups of a region as the server holds them: name -> {GroupName, Strategy, Tags, ...}."""
    return {name: g for (r, name), g in _GROUPS.items() if r == region}


def _create(self: Any) -> ActionResult:
    name, strategy = self._get_param("GroupName"), self._get_param("Strategy")
    if (self.region, name) in _GROUPS:
        raise EC2ClientError("InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists.")
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    group = {"GroupName": name, "Strategy": strategy, "State": "available", "GroupId": f"pg-{next(_IDS):017x}",
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    _GROUPS[(self.region, name)] = group
    _MEMBERS[(self.region, name)] = set()
    return ActionResult({"PlacementGroup": group})


def _describe(self: Any) -> ActionResult:
    names = self._get_param("GroupNames", [])
    found = [g for (r, n), g in _GROUPS.items() if r == self.region and (not names or n in names)]
    missing = [n for n in names if (self.region, n) not in _GROUPS]
    if missing:
        raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{missing[0]}' is unknown.")
    return ActionResult({"PlacementGroups": found})


def _delete(self: Any) -> ActionResult:
    name = self._get_param("GroupName")
    key = (self.region, name)
    if key not in _GROUPS:
        raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
    live = [i for i in self.ec2_backend.all_instances() if i.id in _MEMBERS[key] and i.state != "terminated"]
    if live:
        raise EC2ClientError("InvalidPlacementGroup.InUse", f"The Placement Group '{name}' is in use.")
    del _GROUPS[key], _MEMBERS[key]
    return ActionResult({})


def _run(self: Any) -> ActionResult:
    name = self._get_param("Placement.GroupName")
    if name and (self.region, name) not in _GROUPS:
        raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
    before = {i.id for i in self.ec2_backend.all_instances()}
    result = _ORIGINAL_RUN(self)
    if name:
        _MEMBERS[(self.region, name)] |= {i.id for i in self.ec2_backend.all_instances()} - before
    return result


def install() -> None:
    """Idempotent: the handlers join moto's EC2 responses for the rest of the session."""
    EC2Response.create_placement_group = _create  # type: ignore[attr-defined]
    EC2Response.describe_placement_groups = _describe  # type: ignore[attr-defined]
    EC2Response.delete_placement_group = _delete  # type: ignore[attr-defined]
    EC2Response.run_instances = _run  # type: ignore[method-assign]
