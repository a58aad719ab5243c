"""`cfl-repo host nginx`: a complete nginx configuration that serves the published tree with the
caching rules of docs/hosting.md, mutual TLS against the supplier CA, and per-request authorisation
from the supplier registry (BR05).

Rendering is pure (`render_nginx_config`: settings and registry in, text out); `check_settings`
checks what the operator typed before anything is written, so a value can never break out of the
configuration's syntax. The template ships in the wheel (``repo_tool/access/host_templates``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import jinja2
from cryptography.hazmat.primitives.serialization import Encoding

from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, field_error
from metadata_templates.outcomes import MAX_REPORT_BYTES
from metadata_templates.suppliers import DEFAULT_ACCESS_POLICY, SupplierRegistry
from repo_tool.access.certificates import certificate_sha1, load_one_certificate
from repo_tool.access.host_estate import EstateMaps, template_values
from repo_tool.access.host_pilots import PILOT_REFUSAL_VARIABLE, Embargo, render_pilot_rules
from repo_tool.site.render import CONTENT_SECURITY_POLICY

TEMPLATE = "nginx.conf.j2"

_HOST_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}( [a-z_][a-z0-9_-]{0,31})?")
# Characters that would end a quoted nginx value or start a variable.
_UNSAFE_IN_PATH = re.compile(r'["\\$;{}\s\x00-\x1f\x7f]')


@dataclass(frozen=True)
class NginxSettings:
    """What the operator chooses; paths are absolute or relative to nginx's prefix (``-p``).

    Attributes:
        server_name: the host name clients use.
        listen: ``ADDR:PORT`` (``[v6]:PORT`` for IPv6).
        tls_cert: the server certificate chain (PEM).
        tls_key: its private key (PEM).
        supplier_ca: the CA that issues supplier certificates (PEM).
        public_root: the published tree.
        access_log: where the audit's log goes.
        error_log: nginx's error log.
        pid_file: the master's pid file.
        temp_dir: a directory nginx may create its temporary directories in.
        user: the workers' ``user [group]``, when the master runs as root.
        outcomes_dir: where suppliers' outcome reports are uploaded (absolute), or None.
    """

    server_name: str
    listen: str
    tls_cert: str
    tls_key: str
    supplier_ca: str
    public_root: str
    access_log: str = "cfl-access.log"
    error_log: str = "cfl-error.log"
    pid_file: str = "cfl-nginx.pid"
    temp_dir: str = "."
    user: str | None = None
    # Issue 24: the folder suppliers' delivery-outcome reports are PUT into (None: no upload).
    outcomes_dir: str | None = None


def _listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(field_error("--listen", value, "ADDR:PORT with a port 1-65535"))
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if address != "*":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            if not _HOST_NAME.fullmatch(address):
                raise ConfigurationError(
                    field_error(
                        "--listen", value, "an IP address, [IPv6], * or a host name, then :PORT"
                    )
                ) from None
    return value


def check_settings(settings: NginxSettings) -> NginxSettings:
    """Refuse any value that is not what its option expects.

    Raises:
        ConfigurationError: a bad host name, listen address, user, or a path nginx cannot quote.
    """
    if not _HOST_NAME.fullmatch(settings.server_name):
        raise ConfigurationError(
            field_error("--server-name", settings.server_name, "a DNS host name")
        )
    _listen(settings.listen)
    if settings.user is not None and not _USER.fullmatch(settings.user):
        raise ConfigurationError(field_error("--user", settings.user, "USER or 'USER GROUP'"))
    for option, value in (
        ("--tls-cert", settings.tls_cert),
        ("--tls-key", settings.tls_key),
        ("--supplier-ca", settings.supplier_ca),
        ("--public-root", settings.public_root),
        ("--access-log", settings.access_log),
        ("--error-log", settings.error_log),
        ("--pid-file", settings.pid_file),
        ("--temp-dir", settings.temp_dir),
        *(
            (("--outcomes-dir", settings.outcomes_dir),)
            if settings.outcomes_dir is not None
            else ()
        ),
    ):
        if not value or _UNSAFE_IN_PATH.search(value):
            raise ConfigurationError(
                field_error(
                    option, value, "a path without quotes, backslashes, $, ;, braces or spaces"
                )
            )
    return settings


@dataclass(frozen=True)
class _Entry:
    entity_id: str
    status: str
    sha1: str
    sha256: str
    device_types: tuple[str, ...]


def _entries(registry: SupplierRegistry, policy: Mapping[str, tuple[str, ...]]) -> list[_Entry]:
    entries = []
    for supplier in registry.suppliers:
        cert = load_one_certificate(supplier.certificate_pem.encode("ascii"), supplier.entity_id)
        entries.append(
            _Entry(
                entity_id=supplier.entity_id,
                status=supplier.status,
                sha1=certificate_sha1(cert.public_bytes(Encoding.DER)),
                sha256=supplier.certificate_sha256,
                device_types=tuple(
                    sorted(t for t, roles in policy.items() if set(roles) & set(supplier.roles))
                ),
            )
        )
    return entries


def _template() -> jinja2.Template:
    source = (
        resources.files("repo_tool.access").joinpath("host_templates", TEMPLATE).read_text("utf-8")
    )
    env = jinja2.Environment(
        # nginx syntax, not HTML: every value is checked (check_settings) or generated (hex, IDs).
        autoescape=False,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.from_string(source)


def render_nginx_config(
    settings: NginxSettings,
    registry: SupplierRegistry,
    *,
    registry_sha256: str,
    now: datetime,
    policy: Mapping[str, tuple[str, ...]] = DEFAULT_ACCESS_POLICY,
    estate: EstateMaps | None = None,
    embargoes: Sequence[Embargo] = (),
) -> str:
    """The configuration text for ``settings`` and ``registry`` (pure); with ``estate``
    (repo_tool/access/host_estate.py) images go only to the suppliers whose estate gives them a
    right, and without it the text is the role-only configuration, byte for byte; ``embargoes``,
    the images still in a pilot, go only to their pilot suppliers (repo_tool/access/host_pilots.py),
    and to those only when the role (and the estate) allow it.

    Raises:
        ConfigurationError: see `check_settings`.
        RejectedInputError: a registered certificate no longer parses.
    """
    check_settings(settings)
    return _template().render(
        generated=format_timestamp(now),
        registry_sha256=registry_sha256 or "(empty)",
        suppliers=_entries(registry, policy),
        content_security_policy=CONTENT_SECURITY_POLICY,
        outcomes_max_bytes=MAX_REPORT_BYTES,
        **_decision_values(estate, embargoes),
        **{k: getattr(settings, k) for k in settings.__dataclass_fields__},
    )


def _decision_values(estate: EstateMaps | None, embargoes: Sequence[Embargo]) -> dict[str, object]:
    """The template's decision chain: the registry's refusal, then the estate's (``--access
    estate``), then the embargo's; each map only narrows the one before it, so a pilot supplier
    still needs its User Roles and its entitlement, and ``refusal`` names the last of them."""
    values = dict(template_values(estate))
    before = str(values["refusal"])
    values["pilot_rules"] = render_pilot_rules(embargoes, after=before)
    if embargoes:
        values["refusal"] = PILOT_REFUSAL_VARIABLE
    return values
