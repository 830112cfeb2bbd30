"""The GCE fake's gang routes: `instances.bulkInsert` (all or nothing) and regional resource policies.

A mixin of `tests.gce_fake.GceFake`, apart only to keep each file short: it works on the fake's own
state (instances, operations, request ids, stockouts) under the fake's lock, as the other routes do.
`free_vms[zone]` says how many VMs a bulkInsert can have in a zone; a policy a VM still names cannot
be deleted (GCE's resourceInUseByAnotherResource).
"""

from __future__ import annotations

from typing import Any

import tests.gce_fake as gce  # the fake's records; read at call time (the two modules import each other)


class GangRoutes:
    """Expects the attributes `GceFake.__init__` sets: project, instances, policies, bulk_inserted, free_vms."""

    project: str
    instances: dict[tuple[str, str], dict[str, Any]]
    operations: dict[tuple[str, str], Any]
    by_request_id: dict[str, tuple[str, str]]
    request_ids: list[str]
    forget_request_ids: bool
    policies: dict[tuple[str, str], dict[str, Any]]
    bulk_inserted: list[dict[str, Any]]
    free_vms: dict[str, int]
    _stockouts: dict[str, tuple[str, bool]]
    _ids: Any

    def _add_op(self, zone: str, kind: str, target: str, *, polls: int | None = None) -> Any:
        raise NotImplementedError  # GceFake's

    def _bulk_insert(self, zone: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        """GCE's rule: with `minCount` VMs free it makes `count` (here: all of them, as orch asks for
        count = minCount), else none and the operation fails with a stockout."""
        rid = query.get("requestId", "")
        self.request_ids.append(rid)
        if rid and rid in self.by_request_id and not self.forget_request_ids:
            return self.operations[self.by_request_id[rid]].json(self.project)
        count = int(body["count"])
        min_count = int(body.get("minCount", count))
        names = list(body.get("perInstanceProperties", {}))
        if len(names) != count:
            raise gce.HttpFault(400, "invalid", f"perInstanceProperties names {len(names)} VMs, count is {count}")
        props = body["instanceProperties"]
        for url in props.get("resourcePolicies", []):
            region, name = url.split("/regions/", 1)[1].split("/resourcePolicies/")
            policy = self.policies.get((region, name))
            if policy is None:
                raise gce.HttpFault(404, "notFound", f"The resource '{url}' was not found")
            wanted = int(policy.get("groupPlacementPolicy", {}).get("vmCount", count))
            if wanted != count or zone.rsplit("-", 1)[0] != region:
                raise gce.HttpFault(400, "invalid", f"placement policy {name} holds {wanted} VMs in {region}")
        taken = [n for n in names if (zone, n) in self.instances]
        if taken:
            raise gce.HttpFault(409, "alreadyExists", f"The resource 'projects/{self.project}/zones/{zone}/instances/"
                                                  f"{taken[0]}' already exists")
        self.bulk_inserted.append(body)
        op = self._add_op(zone, "bulkInsert", names[0])
        stockout = self._stockouts.pop(zone, None)
        free = self.free_vms.get(zone)
        if stockout is not None or (free is not None and free < min_count):
            code, leave = stockout or ("ZONE_RESOURCE_POOL_EXHAUSTED", False)
            op.error = {"error": {"errors": [{"code": code, "message": f"The zone '{zone}' does not have enough "
                                                                       f"resources available for {min_count} VMs."}]},
                        "httpErrorStatusCode": 503, "httpErrorMessage": "SERVICE UNAVAILABLE"}
            if leave:  # a VM GCE had begun and stopped (what orch must still delete)
                self._make_vm(zone, names[0], props)["status"] = "TERMINATED"
        else:
            made = [self._make_vm(zone, n, props) for n in names]
            if free is not None:
                self.free_vms[zone] = free - count
            op.on_done.append(lambda: [vm.update(status="RUNNING") for vm in made])
        if rid:
            self.by_request_id[rid] = (zone, op.name)
        if op.done:
            op.poll()
        return op.json(self.project)

    def _make_vm(self, zone: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
        inst = dict(props, name=name, machineType=f"{gce.BASE}/projects/{self.project}/zones/{zone}/machineTypes/"
                                                  f"{props['machineType']}")
        inst.update(id=str(next(self._ids)), status="PROVISIONING", creationTimestamp=gce.rfc3339(),
                    zone=f"{gce.BASE}/projects/{self.project}/zones/{zone}",
                    selfLink=f"{gce.BASE}/projects/{self.project}/zones/{zone}/instances/{name}")
        self.instances[(zone, name)] = inst
        return inst

    def _policy_insert(self, region: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        name = str(body.get("name", ""))
        if (region, name) in self.policies:
            raise gce.HttpFault(409, "alreadyExists", f"The resource 'projects/{self.project}/regions/{region}/"
                                                  f"resourcePolicies/{name}' already exists")
        self.policies[(region, name)] = {**body, "kind": "compute#resourcePolicy", "status": "READY",
                                         "region": f"{gce.BASE}/projects/{self.project}/regions/{region}",
                                         "selfLink": f"{gce.BASE}/projects/{self.project}/regions/{region}/"
                                                     f"resourcePolicies/{name}"}
        return self._region_operation(region, f"operation-{next(self._ids)}", query=query, body=None, target=name)

    def _policy_get(self, region: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        if (region, name) not in self.policies:
            raise gce.HttpFault(404, "notFound", f"The resource 'projects/{self.project}/regions/{region}/"
                                             f"resourcePolicies/{name}' was not found")
        return self.policies[(region, name)]

    def _policy_delete(self, region: str, name: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        self._policy_get(region, name, query=query, body=body)
        suffix = f"regions/{region}/resourcePolicies/{name}"
        users = [n for (_, n), inst in self.instances.items()
                 if any(str(u).endswith(suffix) for u in inst.get("resourcePolicies", []))]
        if users:
            raise gce.HttpFault(400, "resourceInUseByAnotherResource",
                            f"The resource_policy resource '{suffix}' is already being used by '{users[0]}'")
        del self.policies[(region, name)]
        return self._region_operation(region, f"operation-{next(self._ids)}", query=query, body=None, target=name)

    def _region_operation(self, region: str, name: str, *, query: dict[str, str], body: Any,
                          target: str = "") -> dict[str, Any]:
        return {"kind": "compute#operation", "name": name, "operationType": "insert", "status": "DONE",
                "progress": 100, "insertTime": gce.rfc3339(), "endTime": gce.rfc3339(),
                "region": f"{gce.BASE}/projects/{self.project}/regions/{region}",
                "targetLink": f"{gce.BASE}/projects/{self.project}/regions/{region}/resourcePolicies/{target}",
                "selfLink": f"{gce.BASE}/projects/{self.project}/regions/{region}/operations/{name}"}
