"""`fhir-anonymize share`: a read-only, HTTPS-only, short-lived SAS for a research team.

Read and list only (write, delete and the rest are refused), an expiry no later than 7 days,
optionally an IP range; signed with the account key of the configured connection, or with a user
delegation key obtained through azure-identity (`--user-delegation`, the recommended kind on real
accounts). The URL goes to stdout only and is never logged.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from anonymizer.azure import clients
from anonymizer.errors import ConfigurationError

MAX_EXPIRY = timedelta(days=7)
ALLOWED_PERMISSIONS = set("rl")
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90m`, `24h`, `7d`, `1d12h`: positive and at most 7 days."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ConfigurationError(f"--expiry {text!r}: use a duration such as 90m, 24h or 7d (at most 7d)")
    # At most nine digits per part: no sum of them overflows a timedelta.
    duration = sum((timedelta(**{_UNITS[unit]: int(number)}) for number, unit in parts), timedelta())
    if duration <= timedelta(0):
        raise ConfigurationError("--expiry must be in the future")
    if duration > MAX_EXPIRY:
        raise ConfigurationError("--expiry may be at most 7 days: share again when it runs out")
    return duration


def parse_ip(text: str) -> str:
    """An IPv4 address or an ascending range `a.b.c.d-e.f.g.h`, as a SAS `sip` takes it."""
    parts = [part.strip() for part in text.split("-")]
    try:
        addresses = [ipaddress.IPv4Address(part) for part in parts]
    except ValueError:
        addresses = []
    if len(addresses) != len(parts) or not 1 <= len(parts) <= 2:
        raise ConfigurationError(
            f"--ip {text!r}: give an IPv4 address (203.0.113.7) or a range (203.0.113.0-203.0.113.255)"
        )
    if len(addresses) == 2 and addresses[0] > addresses[1]:
        raise ConfigurationError(f"--ip {text!r}: the range starts after it ends")
    return "-".join(str(a) for a in addresses)


def parse_container(text: str) -> str:
    if not _CONTAINER.fullmatch(text):
        raise ConfigurationError(
            f"--container {text!r} is not a container name (3-63 lower-case letters, digits and "
            "single hyphens)"
        )
    return text


def share_from_arguments(
    container: str,
    *,
    expiry: str,
    prefix: str | None = None,
    ip: str | None = None,
    user_delegation: bool = False,
    permissions: str = "rl",
) -> str:
    """The command line's share: every argument checked first (one-line ConfigurationError),
    then the service asked; its refusals become one line too."""
    container = parse_container(container)
    duration = parse_duration(expiry)
    address = parse_ip(ip) if ip else None
    if prefix is not None and (not prefix or any(ord(c) < 32 for c in prefix)):
        raise ConfigurationError("--prefix must be a non-empty blob name prefix")
    try:
        return share_url(
            container,
            expiry=duration,
            prefix=prefix,
            ip=address,
            user_delegation=user_delegation,
            permissions=permissions,
        )
    except ClientAuthenticationError:
        how = (
            "a user delegation key needs Entra ID credentials (azure-identity)"
            if user_delegation
            else ("check the connection's account key")
        )
        raise ConfigurationError(f"the storage account refused to sign: {how}") from None
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or exc.status_code
        raise ConfigurationError(f"the storage account refused the request ({code})") from None
    except AzureError as exc:
        raise ConfigurationError(f"the storage account could not be reached ({type(exc).__name__})") from None


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
    account = service.account_name
    assert account is not None  # (a service client always knows its account)

    def sign(**key: Any) -> str:
        return generate_container_sas(
            account, container, permission=permission, expiry=end, start=start, protocol="https", ip=ip, **key
        )

    if user_delegation:
        if getattr(service.credential, "account_key", None):
            raise ConfigurationError(
                "--user-delegation needs an Entra ID identity (AzureWebJobsStorage__blobServiceUri "
                "with azure-identity), not an account-key connection string"
            )
        key = service.get_user_delegation_key(start, end)
        token = sign(user_delegation_key=key)
    else:
        account_key = getattr(service.credential, "account_key", None)
        if not account_key:
            raise ConfigurationError(
                "no account key in the connection: use --user-delegation with an identity"
            )
        token = sign(account_key=account_key)
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
