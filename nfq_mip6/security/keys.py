"""RFC 4285 MN-HA keys: where they come from (a file or an environment variable) and the
``[[ha.mobile_nodes]]`` credentials that name them. This is the I/O part of the security
layer: it reads key files; the configuration keeps only references, never keys.

A key file holds hex text (whitespace ignored, optional ``0x``) or raw octets and must not be
readable by group or others; a variable holds hex. Keys shorter than 16 octets are refused
(RFC 4285 §4). Error messages name the source, never the key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Final

from nfq_mip6.errors import ConfigurationError
from nfq_mip6.security.auth_codec import MIN_KEY_LENGTH, RESERVED_SPI_MAX, SecurityAssociation


class KeyMaterialError(ConfigurationError):
    """A key file or variable is missing, unreadable or unsuitable (never shows the key)."""


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where an SA's key comes from: a file (raw octets, or hex text) or an environment
    variable (hex). The configuration keeps only this reference, never the key."""

    file: Path | None = None
    env: str | None = None

    def describe(self) -> str:
        return f"key_file {self.file}" if self.file is not None else f"key_env {self.env}"


def _decode_key_text(text: str) -> bytes | None:
    cleaned = "".join(text.split())
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def load_key(source: KeySource, environ: Mapping[str, str] = os.environ) -> bytes:
    """Read a key. A file holds hex text (whitespace ignored, optional ``0x``) or raw octets;
    a variable holds hex. Files readable by group or others are refused.

    Raises:
        KeyMaterialError: with a message that names the source but never the key.
    """
    if source.file is not None:
        path = source.file
        try:
            info = path.stat()
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyMaterialError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyMaterialError(f"{path}: key file must not be accessible by group/others")
        try:
            decoded = _decode_key_text(raw.decode("ascii"))
        except UnicodeDecodeError:
            decoded = None
        key = decoded if decoded is not None else raw
        where = str(path)
    elif source.env is not None:
        value = environ.get(source.env)
        if value is None:
            raise KeyMaterialError(f"environment variable {source.env} is not set")
        decoded = _decode_key_text(value)
        if decoded is None:
            raise KeyMaterialError(f"environment variable {source.env} is not hexadecimal")
        key = decoded
        where = f"environment variable {source.env}"
    else:
        raise KeyMaterialError("no key_file or key_env given")
    if len(key) < MIN_KEY_LENGTH:
        raise KeyMaterialError(f"{where}: key of {len(key)} octets, need ≥ {MIN_KEY_LENGTH}")
    return key


@dataclass(frozen=True, slots=True)
class MobileNodeCredentials:
    """One ``[[ha.mobile_nodes]]`` table: policy, SPI and where the key is (not the key)."""

    spi: int
    key_source: KeySource
    home_addresses: tuple[IPv6Network, ...]
    nai: str | None = None
    mobile_router: bool = False
    """RFC 3963: the key's holder may register as a mobile router (else status 140)."""
    prefixes: tuple[IPv6Network, ...] = ()
    """RFC 3963 §6.1.2: the Mobile Network Prefixes it may claim (all of them in implicit
    mode)."""

    def __str__(self) -> str:
        homes = ",".join(str(n) for n in self.home_addresses)
        return f"spi {self.spi} for {homes} ({self.key_source.describe()})"

    def load(self, environ: Mapping[str, str] = os.environ) -> SecurityAssociation:
        """Read the key; raises :class:`KeyMaterialError` (naming the SPI, not the key)."""
        try:
            key = load_key(self.key_source, environ)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"mobile node SPI {self.spi}: {exc}") from None
        nai = self.nai.encode() if self.nai is not None else None
        return SecurityAssociation(self.spi, key, self.home_addresses, nai)


_ENTRY_KEYS: Final = (
    "home_address",
    "home_prefix",
    "spi",
    "key_file",
    "key_env",
    "nai",
    "mobile_router",
    "prefixes",
)


def parse_spi(value: object) -> int:
    """A mobility SPI: an integer in 256..4294967295 (RFC 4285 §4)."""
    if isinstance(value, bool):
        raise ValueError(f"SPI must be an integer, got {value!r}")
    try:
        spi = int(str(value), 0) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"SPI must be an integer, got {value!r}") from None
    if not RESERVED_SPI_MAX < spi <= 0xFFFF_FFFF:
        raise ValueError(f"SPI {spi} outside 256..4294967295 (0-255 are reserved, RFC 4285)")
    return spi


def parse_mobile_node_entries(value: object) -> tuple[MobileNodeCredentials, ...]:
    """Parse ``[[ha.mobile_nodes]]`` (a list of tables) into credentials.

    Each table: ``home_address`` (one address) and/or ``home_prefix`` (a range), ``spi``,
    exactly one of ``key_file``/``key_env``, optional ``nai``. Raises ValueError naming the
    entry and key.
    """
    if not isinstance(value, list):
        raise ValueError("must be an array of tables: [[ha.mobile_nodes]]")
    entries: list[MobileNodeCredentials] = []
    seen: set[int] = set()
    for number, table in enumerate(value, start=1):
        where = f"entry {number}"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table")
        unknown = sorted(set(table) - set(_ENTRY_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
        homes: list[IPv6Network] = []
        try:
            if "home_address" in table:
                homes.append(IPv6Network(f"{IPv6Address(str(table['home_address']))}/128"))
            if "home_prefix" in table:
                homes.append(IPv6Network(str(table["home_prefix"])))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not homes:
            raise ValueError(f"{where}: needs home_address or home_prefix (what it may register)")
        if "spi" not in table:
            raise ValueError(f"{where}: needs spi")
        try:
            spi = parse_spi(table["spi"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if spi in seen:
            raise ValueError(f"{where}: SPI {spi} used twice")
        seen.add(spi)
        key_file, key_env = table.get("key_file"), table.get("key_env")
        if (key_file is None) == (key_env is None):
            raise ValueError(f"{where}: needs exactly one of key_file or key_env")
        source = (
            KeySource(file=Path(str(key_file)))
            if key_file is not None
            else KeySource(env=str(key_env))
        )
        nai = str(table["nai"]) if "nai" in table else None
        mobile_router, prefixes = _mobile_router_policy(table, where)
        entries.append(
            MobileNodeCredentials(spi, source, tuple(homes), nai, mobile_router, prefixes)
        )
    return tuple(entries)


def _mobile_router_policy(
    table: dict[str, object], where: str
) -> tuple[bool, tuple[IPv6Network, ...]]:
    """``mobile_router = true`` and ``prefixes = ["2001:db8:77::/48", ...]`` (RFC 3963)."""
    mobile_router = table.get("mobile_router", False)
    if not isinstance(mobile_router, bool):
        raise ValueError(f"{where}: mobile_router must be true or false")
    raw = table.get("prefixes", [])
    if not isinstance(raw, list):
        raise ValueError(f"{where}: prefixes must be a list of IPv6 prefixes")
    if raw and not mobile_router:
        raise ValueError(f"{where}: prefixes given but mobile_router is not true")
    prefixes: list[IPv6Network] = []
    for text in raw:
        try:
            network = IPv6Network(str(text))
        except ValueError as exc:
            raise ValueError(f"{where}: prefixes: {exc}") from None
        if network.prefixlen == 0 or network.is_link_local or network.is_multicast:
            raise ValueError(f"{where}: prefixes: {network} is not a global unicast prefix")
        prefixes.append(network)
    return mobile_router, tuple(prefixes)


__all__ = [
    "KeyMaterialError",
    "KeySource",
    "MobileNodeCredentials",
    "load_key",
    "parse_mobile_node_entries",
    "parse_spi",
]
