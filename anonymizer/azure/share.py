"""`fhir-anonymize share`: a read-only, HTTPS-only, short-lived SAS for a research team.

Read and list only (write, delete and the rest are refused), an expiry no later than 7 days,
optionally an IP range; signed with the account key of the configured connection, or with a user
delegation key obtained through azure-identity (`--user-delegation`, the recommended kind on real
accounts). The URL goes to stdout only and is never logged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from anonymizer.azure import clients
from anonymizer.errors import ConfigurationError

MAX_EXPIRY = timedelta(days=7)
ALLOWED_PERMISSIONS = set("rl")
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `1d12h`: positive and at most 7 days."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ConfigurationError(f"--expiry {text!r}: use a duration such as 90m, 24h or 7d")
    duration = sum((timedelta(**{_UNITS[unit]: int(number)}) for number, unit in parts), timedelta())
    if duration <= timedelta(0):
        raise ConfigurationError("--expiry must be in the future")
    if duration > MAX_EXPIRY:
        raise ConfigurationError("--expiry may be at most 7 days: share again when it runs out")
    return duration


def share_url(
    container: str,
    *,
    expiry: timedelta,
    prefix: str | None = None,
    ip: str | None = None,
    user_delegation: bool = False,
    permissions: str = "rl",
    service: BlobServiceClient | None = None,
) -> str:
    if not permissions or set(permissions) - ALLOWED_PERMISSIONS:
        raise ConfigurationError("a research share is read and list only (permissions 'r' and 'l')")
    service = service or clients.blob_service_from_environment()
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + expiry  # a little slack for clock skew
    permission = ContainerSasPermissions(read="r" in permissions, list="l" in permissions)
    common = {
        "account_name": service.account_name,
        "container_name": container,
        "permission": permission,
        "expiry": end,
        "start": start,
        "protocol": "https",
        "ip": ip,
    }
    if user_delegation:
        key = service.get_user_delegation_key(start, end)
        token = generate_container_sas(user_delegation_key=key, **common)
    else:
        account_key = getattr(service.credential, "account_key", None)
        if not account_key:
            raise ConfigurationError(
                "no account key in the connection: use --user-delegation with an identity"
            )
        token = generate_container_sas(account_key=account_key, **common)
    base = f"{service.url.rstrip('/')}/{container}"
    if not base.startswith("https://"):
        raise ConfigurationError(
            "the storage endpoint is not HTTPS; an HTTPS-only share would not work there"
        )
    if prefix:
        return f"{base}?restype=container&comp=list&prefix={quote(prefix)}&{token}"
    return f"{base}?{token}"


def instructions(url_placeholder: str = "<URL>") -> str:
    return (
        "How the research team downloads (the URL grants read and list until it expires):\n"
        f'  azcopy copy "{url_placeholder}" ./dataset --recursive\n'
        f"  or any HTTPS client: GET the URL with restype=container&comp=list to list, then each blob as\n"
        "  https://<account>/<container>/<blob>?<the same token>\n"
    )
