"""The agents' configurations of the NEMO test bed (RFC 3963): the HA that serves the MN as
a mobile router, and the MN configured as one, in both prefix modes.

``nfq-mip6 testbed up --nemo`` writes them, with a fresh RFC 4285 key the two share, into
the test bed's run directory (``/run/nfq-mip6-testbed/<prefix>/nemo/``):

* ``ha.toml``: the home agent of the home link, one ``[[ha.mobile_nodes]]`` entry for the
  MN's home address with ``mobile_router = true`` and the mobile network prefix (the prefix
  table of RFC 3963 §6.1.2; the HA registers it in implicit mode, checks it in explicit mode);
* ``mn.toml``: the MN as a mobile router listing its prefix in each Binding Update (explicit
  mode, RFC 3963 §5.2), its LAN ``lan0``;
* ``mn-implicit.toml``: the same without the prefix in the BUs (implicit mode);
* ``mr.key``: the 16-octet key (mode 0600).

:meth:`nfq_mip6.testbed.Testbed.nemo_config` gives their paths. The agents are not started
by the test bed: the demo, the tests and the benchmarks run ``nfq-mip6 run --config ...``
in the nodes' namespaces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    HOME_PREFIX,
    MN_HOME_ADDRESS,
    MN_INTERFACE,
    MOBILE_NETWORK_PREFIX,
    MR_LAN_INTERFACE,
)

__all__ = ["MR_SPI", "PrefixMode", "ha_config", "mn_config", "write_configs"]

PrefixMode = Literal["explicit", "implicit"]
MR_SPI: Final = 1000  # the mobility SPI of the mobile router's RFC 4285 key
KEY_LENGTH: Final = 16


def ha_config(key_file: Path, state_dir: Path) -> str:
    """The HA's TOML: the home link, one mobile router with the mobile network prefix."""
    return f"""\
# nfq-mip6 Home Agent of the NEMO test bed (RFC 3963), written by `nfq-mip6 testbed up --nemo`
role = "ha"
interface = "eth0"
metrics_listen = ""
state_dir = "{state_dir}"

[ha]
address = "{HA_ADDRESS}"
home_prefix = "{HOME_PREFIX}"

[[ha.mobile_nodes]]
home_address = "{MN_HOME_ADDRESS}"
spi = {MR_SPI}
key_file = "{key_file}"
mobile_router = true                     # may register with R = 1 (else status 140)
prefixes = ["{MOBILE_NETWORK_PREFIX}"]   # what it may claim (implicit mode: all of them)
"""


def mn_config(key_file: Path, state_dir: Path, prefix_mode: PrefixMode = "explicit") -> str:
    """The MN's TOML as a mobile router (``prefix_mode``: prefixes in the BU or not)."""
    return f"""\
# nfq-mip6 Mobile Router of the NEMO test bed (RFC 3963 §5), written by
# `nfq-mip6 testbed up --nemo`; prefix mode {prefix_mode}
role = "mn"
interface = "{MN_INTERFACE}"
metrics_listen = ""
state_dir = "{state_dir}"
route_optimization = false               # NEMO Basic Support: everything through the HA

[mn]
home_address = "{MN_HOME_ADDRESS}/64"
home_agent = "{HA_ADDRESS}"
auth_spi = {MR_SPI}
auth_key_file = "{key_file}"
mobile_router = true
prefixes = ["{MOBILE_NETWORK_PREFIX}"]
prefix_mode = "{prefix_mode}"
mobile_network_interface = "{MR_LAN_INTERFACE}"
"""


CONFIG_FILES: Final[dict[str, str]] = {
    "ha": "ha.toml",
    "mn": "mn.toml",
    "mn-implicit": "mn-implicit.toml",
}


def write_configs(directory: Path) -> dict[str, Path]:
    """Write the key and the three configurations into ``directory``; return their paths
    by name (``ha``, ``mn``, ``mn-implicit``, ``key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "mr.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(KEY_LENGTH))
    key.chmod(0o600)
    texts = {
        "ha": ha_config(key, directory / "ha-state"),
        "mn": mn_config(key, directory / "mn-state", "explicit"),
        "mn-implicit": mn_config(key, directory / "mn-state", "implicit"),
    }
    for state_dir in ("ha-state", "mn-state"):
        (directory / state_dir).mkdir(mode=0o700, exist_ok=True)
    paths: dict[str, Path] = {"key": key}
    for name, text in texts.items():
        path = directory / CONFIG_FILES[name]
        path.write_text(text)
        paths[name] = path
    return paths
