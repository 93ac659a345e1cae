"""``LOOPLINE_MQTT_URL`` (``mqtt://user:pass@host:1883``, ``mqtts://…``) as its parts.

One optional query parameter, ``?protocol=5`` (or ``3.1.1``, the default), picks the MQTT
version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
_SCHEMES: Final = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
PROTOCOLS: Final = ("5", "3.1.1")


@dataclass(frozen=True)
class MqttUrl:
    """Where a broker is and how to sign in; the password never shows in ``repr``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    protocol: str | None = None  # "5", "3.1.1" or None (the client's default, 3.1.1)

    def redacted(self) -> str:
        """The URL with the password hidden, for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?protocol={self.protocol}" if self.protocol else ""
        return f"{scheme}://{user}{host}:{self.port}{query}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Split an MQTT URL; raise ``ValueError`` naming what is wrong with it."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"MQTT URL scheme must be mqtt:// or mqtts://, got {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("MQTT URL has no host")
    if parts.path not in ("", "/"):
        raise ValueError(f"MQTT URL takes no path, got {parts.path!r}")
    tls = _SCHEMES[scheme]
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"protocol"})
    if unknown:
        raise ValueError(f"MQTT URL has unknown parameters: {', '.join(unknown)}")
    protocol = query["protocol"][-1] if "protocol" in query else None
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"MQTT URL protocol must be one of {', '.join(PROTOCOLS)}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"MQTT URL port is invalid: {exc}") from None
    return MqttUrl(
        host=parts.hostname,
        port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        protocol=protocol,
    )
