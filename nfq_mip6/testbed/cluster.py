"""The Home Agent cluster test bed (``nfq-mip6 testbed up --cluster N``), as data and renderings.

The HOWTO test bed with its single HA replaced by N HA *hosts* that serve one **virtual HA**
(docs/cluster.md)::

      ha1 ─┐ eth0 fec0:106:2700::11    ┌─ R ::1 (home router, radvd) ── internet ...
      ha2 ─┤ eth0 fec0:106:2700::12    │
      ha3 ─┤ eth0 fec0:106:2700::13  homenet fec0:106:2700::/64
      MN  ─┘ (at home)                 │
      ha1..haN eth1 fd00:99::1..N ── mgmt fd00:99::/64 (etcd peers and clients only)

On every host:

* ``vrrp.51``: a macvlan (private mode) on ``eth0`` with the VRRPv3 IPv6 virtual MAC
  ``00:00:5e:00:02:33`` (RFC 5798 §7.3, VRID 51). The test bed creates it before keepalived,
  which adopts an existing macvlan with the right MAC and mode, so that the HA agent can
  start (as a standby) before keepalived elects anyone. The agent's home ``interface`` is
  ``vrrp.51``: the HA address lives there on the active host, the kernel's proxy ND answers
  for the home addresses come from there, and so carry the virtual MAC.
* one etcd member on its management address (``http://[fd00:99::i]:2379``, peers on 2380),
  data in the test bed's run directory;
* the HA agent (``nfq-mip6 run``) with a ``[cluster]`` section naming all members;
* keepalived (VRRPv3, IPv6, ``use_vmac``, 100 ms adverts, ``nopreempt``), priorities 150,
  100, 50, ...; ``notify_master``/``notify_backup``/``notify_fault`` run
  ``nfq-mip6 cluster active|standby`` on the agent's control socket, a ``track_script`` runs
  ``nfq-mip6 cluster status``.

The home link's Router Advertisements come from R (the home router, no Home Agent flag):
a standby must not advertise, and the MN names its home agent (``[mn] home_agent``).

Nothing here touches the system; :class:`~nfq_mip6.testbed.testbed.Testbed` builds it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from nfq_mip6.io.iptables import unspecified_source_drop
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    HOME_LINK_RETRANS_TIMER_MS,
    HOME_PREFIX,
    LINKS,
    MN_HOME_ADDRESS,
    NODES,
    R_HOME_ADDRESS,
    Interface,
    LinkName,
    NodeRole,
    NodeSpec,
    Route,
)

__all__ = [
    "CLUSTER_LINKS",
    "ETCD_CLIENT_PORT",
    "MAX_CLUSTER_SIZE",
    "MGMT_LINK",
    "VHA_NAME",
    "VIRTUAL_LINK_LOCAL",
    "VMAC",
    "VMAC_INTERFACE",
    "VRID",
    "ClusterHost",
    "agent_config",
    "cluster_hosts",
    "cluster_nodes",
    "etcd_argv",
    "keepalived_config",
    "mn_config",
    "notify_script",
    "vmac_sysctls",
    "vmac_unspecified_drop",
]

MGMT_LINK: Final[LinkName] = "mgmt"
CLUSTER_LINKS: Final[tuple[LinkName, ...]] = (*LINKS, MGMT_LINK)
MAX_CLUSTER_SIZE: Final = 7

# One virtual HA: its name (etcd key prefix), VRRP router id and virtual MAC.
VHA_NAME: Final = "vha1"
VRID: Final = 51
# RFC 5798 §7.3: the IPv6 virtual router MAC address is 00-00-5E-00-02-{VRID}.
VMAC: Final = f"00:00:5e:00:02:{VRID:02x}"
VMAC_INTERFACE: Final = f"vrrp.{VRID}"
# RFC 5798 §5.2.9: an IPv6 virtual router's first address is a link-local one.
VIRTUAL_LINK_LOCAL: Final = "fe80::2"
MGMT_PREFIX: Final = "fd00:99::"
ETCD_CLIENT_PORT: Final = 2379
ETCD_PEER_PORT: Final = 2380
# The MN-HA security association of the test bed's MN (RFC 4285), shared by every host.
MN_SPI: Final = 2600
MN_KEY_HEX: Final = "6e66712d6d697036206d6e31206b6579"  # 16 octets
ADVERT_INTERVAL_S: Final = 0.1
# The master announces the virtual MAC again (unsolicited NAs from vrrp.51) this often: a
# host leaving MASTER sends MLD reports from vrrp.51 as its addresses and proxy entries go,
# and the switch then delivers the virtual MAC to it until the master sends from it again
# (seen when a VRRP split brain heals, docs/cluster.md).
GARP_MASTER_REFRESH_S: Final = 1
# keepalived's track script: each run starts the Python CLI (0.4 s of CPU, 1-3 s on this
# loaded 2-core machine), so it runs every 5 s with 5 s to answer, and 2 failures in a row
# move the virtual HA. A dead host is VRRP's business (3 missed adverts, ~0.35 s), not this.
TRACK_INTERVAL_S: Final = 5
TRACK_TIMEOUT_S: Final = 5
TRACK_FALL: Final = 2


@dataclass(frozen=True, slots=True)
class ClusterHost:
    """HA host ``index`` (1-based) of the cluster test bed."""

    index: int

    @property
    def name(self) -> str:
        return f"ha{self.index}"

    @property
    def home_address(self) -> str:
        """The host's own address on the home link (eth0), not the HA address."""
        return f"fec0:106:2700::{0x10 + self.index:x}"

    @property
    def mgmt_address(self) -> str:
        return f"{MGMT_PREFIX}{self.index:x}"

    @property
    def etcd_client_url(self) -> str:
        return f"http://[{self.mgmt_address}]:{ETCD_CLIENT_PORT}"

    @property
    def etcd_peer_url(self) -> str:
        return f"http://[{self.mgmt_address}]:{ETCD_PEER_PORT}"

    @property
    def priority(self) -> int:
        """VRRP priority: 150 for ha1, then 50 less per host (at least 1)."""
        return max(1, 200 - 50 * self.index)


def cluster_hosts(size: int) -> tuple[ClusterHost, ...]:
    if not 2 <= size <= MAX_CLUSTER_SIZE:
        raise ValueError(f"a cluster has 2..{MAX_CLUSTER_SIZE} HA hosts, not {size}")
    return tuple(ClusterHost(i) for i in range(1, size + 1))


def cluster_nodes(size: int) -> tuple[NodeSpec, ...]:
    """The nodes of a cluster test bed: ha1..haN, then the HOWTO's R (now advertising the
    home prefix on homenet), AR, AR2, CN and MN."""
    hosts = tuple(
        NodeSpec(
            name=host.name,
            role=NodeRole.HOME_AGENT,
            interfaces=(
                Interface("eth0", "homenet", (f"{host.home_address}/64",)),
                Interface("eth1", MGMT_LINK, (f"{host.mgmt_address}/64",)),
            ),
            # "dev eth0": the home prefix is also on vrrp.51 on the active host; the
            # host's own packets to the router leave from its own MAC.
            routes=(Route("default", R_HOME_ADDRESS, "eth0"),),
        )
        for host in cluster_hosts(size)
    )
    others = tuple(
        replace(spec, radvd_interface="eth1") if spec.name == "r" else spec
        for spec in NODES
        if spec.role is not NodeRole.HOME_AGENT
    )
    return hosts + others


def vmac_sysctls() -> dict[str, str]:
    """The virtual-MAC interface as the agent's home interface: forwarding and proxy ND
    (RFC 6275 §10.4.1), no autoconfiguration, and the home link's DAD settings that the
    agent's proxy DAD reads (RFC 4862 §5.1)."""
    conf = f"net.ipv6.conf.{VMAC_INTERFACE.replace('.', '/')}"
    neigh = f"net.ipv6.neigh.{VMAC_INTERFACE.replace('.', '/')}"
    return {
        f"{conf}.forwarding": "1",
        f"{conf}.proxy_ndp": "1",
        f"{conf}.accept_ra": "0",
        f"{conf}.autoconf": "0",
        f"{conf}.accept_dad": "0",
        f"{conf}.dad_transmits": "1",
        f"{neigh}.retrans_time_ms": str(HOME_LINK_RETRANS_TIMER_MS),
        f"{neigh}.proxy_delay": "0",
    }


def vmac_unspecified_drop() -> list[str]:
    """The ip6tables rule that keeps a host that is not MASTER from sending from the virtual
    MAC: ``vrrp.51`` has an address only on the master, so whatever else leaves it carries
    the unspecified source address. That is the MLD reports (RFC 3810 §5.2.13) the kernel
    sends when a host leaves MASTER and its addresses and proxy entries go, and the home
    link's switch would learn the virtual MAC at that host's port from them."""
    return unspecified_source_drop(VMAC_INTERFACE)


def etcd_argv(
    host: ClusterHost, hosts: tuple[ClusterHost, ...], data_dir: Path, token: str
) -> list[str]:
    """One member of the test bed's etcd cluster (Debian ``etcd-server``), run in the
    host's namespace; clients and peers on the management address only."""
    initial = ",".join(f"{h.name}={h.etcd_peer_url}" for h in hosts)
    return [
        "etcd", "--name", host.name, "--data-dir", str(data_dir),
        "--listen-client-urls", host.etcd_client_url,
        "--advertise-client-urls", host.etcd_client_url,
        "--listen-peer-urls", host.etcd_peer_url,
        "--initial-advertise-peer-urls", host.etcd_peer_url,
        "--initial-cluster", initial,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", token,
        "--log-level", "warn",
    ]  # fmt: skip


def cluster_command(python: str, action: str, control_socket: Path, *options: str) -> str:
    """``nfq-mip6 cluster ACTION [OPTIONS] --control-socket PATH`` as a shell command line."""
    return shlex.join(
        [python, "-m", "nfq_mip6", "cluster", action, *options,
         "--control-socket", str(control_socket)]
    )  # fmt: skip


def notify_script(python: str, control_socket: Path, log_path: Path) -> str:
    """The keepalived notify script of one host: ``$1`` = MASTER | BACKUP | FAULT | STOP.

    keepalived does not wait for a notify script, so two transitions close together run two
    scripts at once (a slow ``standby`` could finish after ``active``). Each run records its
    state first, then, one run at a time (``flock``), applies the *latest* recorded state:
    MASTER makes the agent active, anything else standby. ``deploy/cluster/nfq-mip6-notify``
    is the installed version.
    """
    active = cluster_command(python, "active", control_socket)
    standby = cluster_command(python, "standby", control_socket)
    state = shlex.quote(str(log_path.with_name("vrrp.state")))
    lock = shlex.quote(str(log_path.with_name("vrrp.lock")))
    return f"""#!/bin/sh
# keepalived notify for the virtual HA {VHA_NAME}: $1 = MASTER | BACKUP | FAULT | STOP
echo "$1" > {state}.$$ && mv {state}.$$ {state}
exec 9> {lock}
flock 9
latest=$(cat {state})
case "$latest" in
  MASTER) role=active; cmd={shlex.quote(active)} ;;
  *) role=standby; cmd={shlex.quote(standby)} ;;
esac
echo "$(date +%s.%N) $1 (latest $latest) -> $role" >> {shlex.quote(str(log_path))}
eval "$cmd" >> {shlex.quote(str(log_path))} 2>&1
"""


def keepalived_config(
    host: ClusterHost,
    notify: Path,
    track_command: str | None,
    *,
    interface: str = "eth0",
) -> str:
    """keepalived.conf of one host: one VRRPv3 IPv6 instance for the virtual HA.

    ``use_vmac`` puts the addresses on ``vrrp.51`` with the virtual MAC; ``vmac_xmit_base``
    sends the adverts from ``eth0``; ``nopreempt`` keeps a recovered host from taking the
    virtual HA back (a second outage); ``garp_master_refresh`` has the master announce the
    virtual MAC every second (the switch forgets a host that left MASTER); ``accept`` lets
    the active host receive packets for the HA address (VRRPv3's default non-owner "no
    accept" would drop the Binding Updates).
    Without ``track_command`` there is no track script.
    """
    track = ""
    track_ref = ""
    if track_command is not None:
        track = f"""vrrp_script nfq_mip6_agent {{
    script "{track_command}"
    interval {TRACK_INTERVAL_S}
    timeout {TRACK_TIMEOUT_S}
    fall {TRACK_FALL}
    rise 1
}}

"""
        track_ref = """    track_script {
        nfq_mip6_agent
    }
"""
    return f"""# keepalived for the virtual HA {VHA_NAME} on {host.name} (nfq-mip6 cluster test bed)
global_defs {{
    router_id {host.name}
    vrrp_version 3
    enable_script_security
    script_user root
    max_auto_priority
}}

{track}vrrp_instance {VHA_NAME} {{
    state BACKUP
    interface {interface}
    virtual_router_id {VRID}
    priority {host.priority}
    advert_int {ADVERT_INTERVAL_S}
    nopreempt
    garp_master_refresh {GARP_MASTER_REFRESH_S}
    accept
    use_vmac {VMAC_INTERFACE}
    vmac_xmit_base
    virtual_ipaddress {{
        {VIRTUAL_LINK_LOCAL}/64
        {HA_ADDRESS}/64
    }}
{track_ref}    notify_master "{notify} MASTER"
    notify_backup "{notify} BACKUP"
    notify_fault "{notify} FAULT"
    notify_stop "{notify} STOP"
}}
"""


def agent_config(
    host: ClusterHost,
    hosts: tuple[ClusterHost, ...],
    host_dir: Path,
    key_file: Path,
    queue_num: int = 0,
) -> str:
    """The HA agent of one host: home interface ``vrrp.51``, the virtual HA's address and
    prefix given (a standby's ``vrrp.51`` has no address), the MN's key, ``[cluster]``
    starting as a standby (keepalived's notify makes one active)."""
    # The host's own member first: a client tries the endpoints in order, and a dead
    # host's member costs a whole connect timeout (its link is gone, nothing refuses).
    ordered = (host, *(h for h in hosts if h != host))
    endpoints = ", ".join(f'"{h.etcd_client_url}"' for h in ordered)
    return f"""# HA agent on {host.name} for the virtual HA {VHA_NAME} (nfq-mip6 cluster test bed)
role = "ha"
interface = "{VMAC_INTERFACE}"
log_level = "info"
queue_num = {queue_num}
control_socket = "{host_dir / "agent.sock"}"
metrics_listen = ""
state_dir = "{host_dir / "state"}"

[ha]
address = "{HA_ADDRESS}"
home_prefix = "{HOME_PREFIX}"
max_binding_lifetime = 400

[[ha.mobile_nodes]]
home_address = "{MN_HOME_ADDRESS}"
spi = {MN_SPI}
key_file = "{key_file}"

[cluster]
backend = "etcd"
endpoints = [{endpoints}]
name = "{VHA_NAME}"
commit_timeout_ms = 1000
role = "standby"                 # until keepalived's notify_master makes it active
"""


def mn_config(key_file: Path, run_dir: Path, binding_lifetime: int = 12) -> str:
    """The MN agent of the cluster test bed: the virtual HA's address, the shared key, and a
    short binding lifetime (refreshed every ~10 s, RFC 6275 §11.7.1), so that the BU after
    a failover comes soon."""
    return f"""# MN agent (nfq-mip6 cluster test bed): registers with the virtual HA {VHA_NAME}
role = "mn"
interface = "eth0"
metrics_listen = ""
control_socket = "{run_dir / "mn.sock"}"
state_dir = "{run_dir / "mn-state"}"

[mn]
home_address = "{MN_HOME_ADDRESS}/64"
home_agent = "{HA_ADDRESS}"
binding_lifetime = {binding_lifetime}
auth_spi = {MN_SPI}
auth_key_file = "{key_file}"
"""
