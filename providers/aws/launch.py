"""What one `run_instances` call carries: market options, tags, placement and the user-data script.

The instance learns its job only through user data: the boot script of `providers.startup`, which
exports the attempt's environment and runs `orch agent` around the job's command, every value quoted.
Credentials are refused outright: an instance gets AWS access from its instance profile, never from
a job.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from typing import Any

from providers.aws.settings import AwsSettings, AwsSettingsError
from providers.startup import StartupRules, agent_script
from vocab import RESUME_NOT_BEFORE, LaunchRequest, Market, PermanentError

PROVIDER = "aws"
TAG_MANAGED, TAG_JOB, TAG_TASK, TAG_ATTEMPT = "orch:managed", "orch:job", "orch:task", "orch:attempt"
TAG_NODES = "orch:nodes"  # on a gang's nodes: the gang's size; each node's rank is its AmiLaunchIndex
USER_DATA_LIMIT = 16 * 1024  # bytes, before the base64 encoding boto3 applies
# A wait longer than a spot notice (120 s) plus clock skew means a wrong clock: start at once instead.
MAX_RESUME_WAIT_S = 900
CLIENT_TOKEN_LIMIT = 64
CREDENTIAL_VARIABLES = frozenset(
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}
)
STARTUP = StartupRules(
    provider=PROVIDER,
    cloud="AWS",
    credential_variables=CREDENTIAL_VARIABLES,
    credentials_advice="AWS credentials are never passed to instances; "
    "grant access through the instance profile in the AWS settings",
    script_name="user data",
    size_limit=USER_DATA_LIMIT,
    limit_owner="EC2",
    too_large_code="UserDataTooLarge",
)


def client_token(attempt_id: str) -> str:
    """The attempt id, or a digest of it when longer than EC2's 64-character token limit."""
    if len(attempt_id) <= CLIENT_TOKEN_LIMIT and attempt_id.isascii():
        return attempt_id
    return hashlib.sha256(attempt_id.encode()).hexdigest()


def attempt_tags(request: LaunchRequest, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        **(extra or {}),
        TAG_MANAGED: "true",
        TAG_JOB: request.job_id,
        TAG_TASK: request.task_id,
        TAG_ATTEMPT: request.attempt_id,
    }


def user_data(request: LaunchRequest, settings: AwsSettings) -> str:
    """The boot script; the agent reads notices from IMDSv2. With `shutdown_on_exit` the script ends
    in a shutdown, which InstanceInitiatedShutdownBehavior=terminate turns into the end of the bill.

    A replacement launched on its predecessor's interruption notice carries ORCH_RESUME_NOT_BEFORE:
    the script then pulls the job's image and waits until that time before it starts the agent, so
    the job loads its checkpoint only once the old instance can no longer write one.
    """
    script = agent_script(
        request,
        STARTUP,
        agent_command=settings.agent_command,
        notice_source=("--imds", settings.imds_url),
        grace_seconds=request.grace_seconds,
        shutdown_on_exit=settings.shutdown_on_exit,
    )
    wait = resume_wait(request)
    if not wait:
        return script
    head, sep, rest = script.partition("\nset -u\n")
    script = head + sep + "\n".join(wait) + "\n" + rest
    if len(script.encode()) > USER_DATA_LIMIT:
        raise PermanentError(
            f"user data is {len(script.encode())} bytes, over EC2's {USER_DATA_LIMIT}: "
            "shorten the job's command or env (large settings belong in files)",
            provider=PROVIDER,
            code="UserDataTooLarge",
        )
    return script


def resume_wait(request: LaunchRequest) -> list[str]:
    """Boot-script lines that hold the job back until ORCH_RESUME_NOT_BEFORE (none without it)."""
    raw = request.env.get(RESUME_NOT_BEFORE)
    if raw is None:
        return []
    try:
        not_before = int(raw)
    except ValueError:
        raise PermanentError(f"{RESUME_NOT_BEFORE} must be Unix seconds, not {raw!r}", provider=PROVIDER) from None
    lines = ["# orch: the previous attempt may save until its notice deadline; start the job after it."]
    if request.image:
        lines.append(f"docker pull {shlex.quote(request.image)} >/dev/null 2>&1 || true")
    lines += [
        f"left=$(( {not_before} - $(date +%s) ))",
        f'if [ "$left" -gt 0 ] && [ "$left" -le {MAX_RESUME_WAIT_S} ]; then',
        '  echo "orch: waiting $left s for the previous attempt to save"; sleep "$left"',
        "fi",
    ]
    return lines


def launch_params(request: LaunchRequest, settings: AwsSettings) -> dict[str, Any]:
    """Keyword arguments of `ec2.run_instances` for one attempt."""
    offer = request.offer
    try:
        region = settings.region(offer.region)
    except AwsSettingsError as exc:
        raise PermanentError(str(exc), provider=PROVIDER, code="RegionNotConfigured") from None
    tags = [{"Key": k, "Value": v} for k, v in attempt_tags(request, settings.tags).items()]
    params: dict[str, Any] = {
        "ImageId": region.ami,
        "InstanceType": offer.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(request.attempt_id),
        "UserData": user_data(request, settings),
        "InstanceInitiatedShutdownBehavior": "terminate",
        # IMDSv2 only; hop limit 2 so a job in a container can still read its notices.
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    subnet = region.subnets.get(offer.zone) if offer.zone else None
    if subnet:
        params["SubnetId"] = subnet
    elif offer.zone:
        params["Placement"] = {"AvailabilityZone": offer.zone}
    groups = settings.security_groups_for(offer.region)
    if groups:
        params["SecurityGroupIds"] = list(groups)
    if settings.instance_profile:
        key = "Arn" if settings.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: settings.instance_profile}
    if settings.key_name:
        params["KeyName"] = settings.key_name
    if offer.market is Market.SPOT:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": settings.spot_interruption,
            },
        }
    return params
