"""``nfq-mip6 stats | cache | bul | ro on|off|status | cluster …`` and ``mipdiag -s|-c|-l``.

Both talk to a running agent through its control socket (:mod:`nfq_mip6.control`). ``mipdiag``
prints what MIPL 1.x's tool printed (Linux Mobile IPv6 HOWTO §5.2), line for line, so that HOWTO
readers recognise it; ``nfq-mip6`` adds the columns MIPL did not have. ``--json`` prints the
agent's answer as JSON for scripts. Exit status: 0 ok, 1 the agent is not running or refused;
``nfq-mip6 cluster status`` exits 3 when the agent runs but its binding store is unreachable
(keepalived's ``track_script`` calls it, docs/cluster.md). ``nfq-mip6 cluster drain`` makes a
home agent send an RFC 5142 Home Agent Switch to every mobile node registered with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, TextIO

from nfq_mip6.constants import DEFAULT_DRAIN_RATE
from nfq_mip6.control import (
    DEFAULT_CONTROL_SOCKET,
    ControlError,
    request,
)

__all__ = [
    "format_bul",
    "format_cache",
    "format_cluster",
    "format_drain",
    "format_statistics",
    "mipdiag",
    "register",
]

# The control socket default; the environment override of the config key applies here too.
CONTROL_SOCKET_ENV = "NFQ_MIP6_AGENT__CONTROL_SOCKET"


def default_control_socket() -> Path:
    return Path(os.environ.get(CONTROL_SOCKET_ENV) or DEFAULT_CONTROL_SOCKET)


# ---------------------------------------------------------------------------------------------
# Formatting (pure functions over the snapshot shapes of the contract).


def format_statistics(stats: dict[str, Any]) -> list[str]:
    """``mipdiag -s``: the title and the 19 MIPL counters, ``Name<pad to 26>: value``."""
    # imported here: the core's dataclasses cost every other command (e.g. keepalived's
    # ``cluster status``) their start-up time for nothing
    from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES

    counters = stats.get("counters", {})
    lines = ["Mobile IPv6 Statistics"]
    for name in MIPL_COUNTER_NAMES:
        lines.append(f"{name:<26}: {counters.get(name, 0)}")
    return lines


def _table(header: list[str], min_widths: list[int], rows: list[list[str]]) -> list[str]:
    widths = [max([w, *(len(row[i]) for row in rows)]) for i, w in enumerate(min_widths)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells))

    return [line(header), *(line(row) for row in rows)]


def format_cache(cache: dict[str, Any], *, extended: bool = False) -> list[str]:
    """``mipdiag -c``: the binding cache table of the HOWTO §5.2.

    MIPL's columns are ``Home Address`` (16 wide), ``Care-of Address`` (33), ``Lifetime`` (8) and
    ``Type `` (5, with its trailing blank); widths grow with longer addresses. ``extended`` adds
    the sequence number, flags and state (``nfq-mip6 cache``).
    """
    header = ["Home Address", "Care-of Address", "Lifetime", "Type "]
    min_widths = [16, 33, 8, 5]
    if extended:
        header += ["Sequence", "Flags", "State"]
        min_widths += [8, 5, 10]
    rows: list[list[str]] = []
    for binding in cache.get("bindings", []):
        row = [
            str(binding.get("home_address", "")),
            str(binding.get("care_of_address", "")),
            str(binding.get("lifetime", "")),
            str(binding.get("type", "")),
        ]
        if extended:
            row += [
                str(binding.get("sequence", "")),
                str(binding.get("flags", "")),
                str(binding.get("state", "")),
            ]
        rows.append(row)
    lines = _table(header, min_widths, rows)
    if not extended:
        # MIPL kept the padding of its last column ("Type " / "2    "); extended lines are
        # stripped so that scripts reading text do not see trailing blanks.
        lines = [lines[0], *_with_prefixes(lines[1:], cache)]
        return ["Mobile IPv6 Binding cache", *lines, *_cluster_line(cache)]
    lines = [lines[0].rstrip(), *_with_prefixes([line.rstrip() for line in lines[1:]], cache)]
    return ["Mobile IPv6 Binding cache", *lines, *_cluster_line(cache)]


def _cluster_line(cache: dict[str, Any]) -> list[str]:
    """An HA cluster member's cache ends with its role and the store revision it holds."""
    cluster = cache.get("cluster")
    if not isinstance(cluster, dict):
        return []
    return [
        f"Cluster {cluster.get('name', '?')}: {cluster.get('role', '?')}, "
        f"store revision {cluster.get('applied_revision', cluster.get('revision', '?'))}"
        f"{'' if cluster.get('store_reachable') else ' (store unreachable)'}"
    ]


def format_cluster(status: dict[str, Any]) -> list[str]:
    """``nfq-mip6 cluster status`` (and the answer to ``active``/``standby``)."""
    counters = status.get("counters") or {}
    reachable = "reachable" if status.get("store_reachable") else "UNREACHABLE"
    lines = [
        f"Cluster                   : {status.get('name', '?')}",
        f"Role                      : {status.get('role', '?')}",
        f"Store                     : {reachable} ({', '.join(status.get('endpoints') or [])})",
        f"Store revision            : {status.get('revision', 0)}",
        f"Applied revision          : {status.get('applied_revision', 0)}",
        f"Lag (revisions)           : {status.get('lag', 0)}",
        f"Bindings                  : {status.get('bindings', 0)}",
        f"Commits in flight         : {status.get('in_flight', 0)}",
    ]
    for name in ("commits", "conflicts", "timeouts", "store_errors", "redecided", "takeovers"):
        lines.append(f"{name.replace('_', ' ').capitalize():<26}: {counters.get(name, 0)}")
    if status.get("last_takeover_ms") is not None:
        lines.append(f"Last takeover             : {status['last_takeover_ms']} ms")
    if status.get("proxy_pending"):
        lines.append(f"Proxy entries to add      : {status['proxy_pending']}")
    if status.get("over_capacity"):
        lines.append(f"Over max_tunnel_nr        : yes ({status.get('max_bindings')})")
    if "caught_up" in status:
        lines.append(f"Caught up with the store  : {'yes' if status['caught_up'] else 'no'}")
    return lines


def _with_prefixes(rows: list[str], cache: dict[str, Any]) -> list[str]:
    """A mobile router's row is followed by its Mobile Network Prefixes (RFC 3963), one
    indented line; other rows are unchanged (MIPL's format)."""
    out: list[str] = []
    for row, binding in zip(rows, cache.get("bindings", []), strict=True):
        out.append(row)
        prefixes = binding.get("prefixes") or []
        if prefixes:
            out.append("    Mobile Network Prefixes: " + ", ".join(map(str, prefixes)))
    return out


def format_bul(bul: dict[str, Any]) -> list[str]:
    """``mipdiag -l``: the binding update list blocks of the HOWTO §5.2."""
    lines = ["Mobile IPv6 Binding update list"]
    for entry in bul.get("entries", []):
        lines.append(f"Recipient CN: {entry.get('recipient', '')}")
        lines.append(
            f"BINDING home address: {entry.get('home_address', '')} "
            f"care-of address: {entry.get('care_of_address', '')}"
        )
        lines.append(
            f"        expires: {entry.get('expires', 0)} sequence: {entry.get('sequence', 0)} "
            f"state: {entry.get('state', 0)}"
        )
        lines.append(
            f"        delay: {entry.get('delay', 0)} max delay {entry.get('max_delay', 0)} "
            f"callback time: {entry.get('callback_time', 0)}"
        )
    return lines


def format_stats_extended(stats: dict[str, Any]) -> list[str]:
    """``nfq-mip6 stats``: MIPL's block, then what this implementation adds."""
    lines = format_statistics(stats)
    nfqueue = stats.get("nfqueue", {})
    ro = stats.get("route_optimization")
    lines += [
        "",
        f"Role                      : {stats.get('role', '?')}",
        f"Route optimization        : {'?' if ro is None else ('on' if ro else 'off')}",
        f"Fast-path backend         : {stats.get('backend', '?')}",
        f"Bindings                  : {stats.get('bindings', 0)}",
        f"NFQUEUE accepted          : {nfqueue.get('accepted', 0)}",
        f"NFQUEUE dropped           : {nfqueue.get('dropped', 0)}",
        f"NFQUEUE rewritten         : {nfqueue.get('rewritten', 0)}",
    ]
    lines += format_ip6tables(stats.get("ip6tables"))
    lines += format_ro_datapath(stats.get("ro_datapath"))
    cluster = stats.get("cluster")
    if isinstance(cluster, dict):  # an HA cluster member (docs/cluster.md)
        counters = cluster.get("counters") or {}
        lines += [
            f"Cluster                   : {cluster.get('name', '?')} {cluster.get('role', '?')}"
            f", store revision {cluster.get('applied_revision', 0)}"
            f" ({'reachable' if cluster.get('store_reachable') else 'UNREACHABLE'})",
            f"Cluster commits           : {counters.get('commits', 0)}"
            f" (conflicts {counters.get('conflicts', 0)}, timeouts {counters.get('timeouts', 0)})",
        ]
    return lines


def format_ip6tables(ip6tables: object) -> list[str]:
    """The ip6tables backend holding the agent's rules and the chains it loaded."""
    if not isinstance(ip6tables, dict):
        return []
    chains = ip6tables.get("chains") or []
    return [
        f"ip6tables backend         : {ip6tables.get('backend', '?')}"
        f" ({ip6tables.get('version') or '?'})",
        f"ip6tables chains          : {', '.join(chains) if chains else 'none loaded'}",
    ]


def format_ro_datapath(ro_datapath: object) -> list[str]:
    """The RO data path (CN, MN) and, with BPF, the programs' counters."""
    if not isinstance(ro_datapath, dict):
        return []
    datapath = ro_datapath.get("datapath", "?")
    lines = [f"RO data path              : {datapath}"]
    if ro_datapath.get("reason"):
        lines[0] += f" ({ro_datapath['reason']})"
    counters = ro_datapath.get("counters") or {}
    for name in ("out_rewritten", "out_skipped", "out_errors"):
        if name in counters:
            lines.append(f"RO BPF {name:<19}: {counters[name]}")
    for name in ("in_rewritten", "in_punted", "in_errors"):
        if name in counters:
            lines.append(f"RO BPF {name:<19}: {counters[name]}")
    return lines


def format_ro(answer: dict[str, Any]) -> list[str]:
    lines = [f"route optimization: {'on' if answer.get('route_optimization') else 'off'}"]
    return lines + format_ro_datapath(answer.get("ro_datapath"))


# ---------------------------------------------------------------------------------------------
# Running a command.


def _ask(path: Path, command: dict[str, Any], err: TextIO, prog: str) -> dict[str, Any] | None:
    try:
        answer = request(path, command)
    except ControlError as exc:
        print(f"{prog}: {exc}", file=err)
        return None
    if not answer.get("ok", False):
        print(f"{prog}: the agent refused {command['cmd']!r}: {answer.get('error', '?')}", file=err)
        return None
    return answer


def _emit(answer: dict[str, Any], lines: list[str], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
    else:
        out.write("".join(f"{line}\n" for line in lines))


def _run(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    path: Path = args.control_socket or default_control_socket()
    command: dict[str, Any] = {"cmd": args.control_cmd}
    if args.control_cmd == "ro" and args.ro_action != "status":
        command["set"] = args.ro_action == "on"
    if args.control_cmd == "cluster":
        command["action"] = args.cluster_action
    answer = _ask(path, command, err, "nfq-mip6")
    if answer is None:
        return 1
    if args.control_cmd == "cluster":
        _emit(answer, format_cluster(answer), args.json, out)
        if not answer.get("store_reachable", False):
            print(f"nfq-mip6: the binding store of {path} is unreachable", file=err)
            if args.cluster_action == "status" and not getattr(args, "agent_only", False):
                return 3
            return 0
        return 0
    if args.control_cmd == "stats":
        lines = format_stats_extended(answer)
    elif args.control_cmd == "cache":
        lines = format_cache(answer, extended=True)
    elif args.control_cmd == "bul":
        lines = format_bul(answer)
    else:
        lines = format_ro(answer)
    _emit(answer, lines, args.json, out)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the agent's answer as JSON")
    parser.add_argument(
        "--control-socket",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"agent control socket (default {DEFAULT_CONTROL_SOCKET}, or ${CONTROL_SOCKET_ENV})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stats``, ``cache``, ``bul`` and ``ro`` to ``nfq-mip6``."""
    helps = {
        "stats": "Mobile IPv6 statistics of the running agent (mipdiag -s)",
        "cache": "binding cache of the running agent (mipdiag -c)",
        "bul": "binding update list of the running Mobile Node (mipdiag -l)",
    }
    for name, text in helps.items():
        parser = subparsers.add_parser(name, help=text, description=text)
        _common(parser)
        parser.set_defaults(func=_run, control_cmd=name)
    parser = subparsers.add_parser(
        "ro",
        help="switch route optimization (return routability) on or off, or show it",
        description="Route optimization: MIPL's accept_return_routability (HOWTO FAQ 4).",
    )
    parser.add_argument("ro_action", nargs="?", choices=("on", "off", "status"), default="status")
    _common(parser)
    parser.set_defaults(func=_run, control_cmd="ro")
    register_drain(register_cluster(subparsers))


CLUSTER_ACTIONS: dict[str, str] = {
    "active": "become the active member: catch up with the store, proxy ND, answer BUs and DHAAD",
    "standby": "become a standby: follow the store, keep tunnel routes, answer nothing",
    "status": "role, store revision, lag, counters; exit 0 only when the store is reachable",
}


def register_cluster(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``nfq-mip6 cluster active|standby|status``; returns the group's subparsers so that a
    module adding an action (e.g. ``drain``) can register its own parser in it."""
    text = "HA cluster member: switch its role or show it (docs/cluster.md)"
    parser = subparsers.add_parser("cluster", help=text, description=text)
    actions = parser.add_subparsers(dest="cluster_action", metavar="ACTION", required=True)
    for name, help_text in CLUSTER_ACTIONS.items():
        action = actions.add_parser(name, help=help_text, description=help_text)
        _common(action)
        if name == "status":
            action.add_argument(
                "--agent-only",
                action="store_true",
                help="exit 0 whenever the agent answers, store reachable or not (a track "
                "that keeps the address where it is while etcd has no quorum)",
            )
        action.set_defaults(func=_run, control_cmd="cluster", cluster_action=name)
    return actions


def format_drain(answer: dict[str, Any]) -> list[str]:
    """``nfq-mip6 cluster drain``: the drain's progress and its Home Agent Switch counters."""
    drain = answer.get("drain", {})
    if drain.get("draining"):
        lines = [
            f"draining at {drain.get('rate')} Home Agent Switch messages/s: "
            f"{drain.get('queued', 0)} queued, {drain.get('awaiting', 0)} awaiting "
            f"a de-registration, {drain.get('registered', 0)} mobile nodes registered"
        ]
    else:
        lines = ["not draining"]
    listed = drain.get("home_agents") or []
    lines.append(f"home agents listed: {', '.join(listed) or 'none (the mobile nodes run DHAAD)'}")
    heard = [
        f"{', '.join(row.get('addresses') or [row.get('link_local', '?')])} "
        f"(preference {row.get('preference')})"
        for row in drain.get("home_agents_list") or []
    ]
    if "preference" in drain:
        lines.append(
            f"preference {drain['preference']}; home agents heard: {'; '.join(heard) or 'none'}"
        )
    lines.append(
        f"switch messages: sent {drain.get('switch_sent', 0)}, "
        f"retransmitted {drain.get('switch_retransmitted', 0)}, "
        f"followed {drain.get('switch_followed', 0)}, "
        f"not understood {drain.get('switch_unsupported', 0)}, "
        f"unanswered {drain.get('switch_unanswered', 0)}"
    )
    return lines


def _run_drain(args: argparse.Namespace) -> int:
    path: Path = args.control_socket or default_control_socket()
    command: dict[str, Any] = {"cmd": "drain", "rate": args.rate}
    if args.home_agent:
        command["home_agents"] = [str(address) for address in args.home_agent]
    if args.stop:
        command["stop"] = True
    if args.status:
        command["status"] = True
    answer = _ask(path, command, sys.stderr, "nfq-mip6")
    if answer is None:
        return 1
    _emit(answer, format_drain(answer), args.json, sys.stdout)
    return 0


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not 0 < rate < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate > 0 (messages per second)")
    return rate


def register_drain(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nfq-mip6 cluster drain [--rate N] [--home-agent ADDR ...] [--stop|--status]``."""
    text = (
        "send an RFC 5142 Home Agent Switch to every mobile node registered with this home "
        "agent, at most N a second, so that they register elsewhere (maintenance, rebalancing)"
    )
    parser = actions.add_parser("drain", help=text, description=text)
    parser.add_argument(
        "--rate",
        type=_positive_rate,
        default=DEFAULT_DRAIN_RATE,
        metavar="N",
        help=f"Home Agent Switch messages per second (default {DEFAULT_DRAIN_RATE:g})",
    )
    parser.add_argument(
        "--home-agent",
        action="append",
        type=IPv6Address,
        metavar="ADDR",
        help="a home agent to list, the preferred first (repeatable; default: [ha] "
        "switch_home_agents, else the other home agents heard on the home link)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--stop", action="store_true", help="end the drain")
    group.add_argument("--status", action="store_true", help="only show the drain")
    _common(parser)
    parser.set_defaults(func=_run_drain)


def mipdiag(argv: Sequence[str] | None = None) -> int:
    """``mipdiag -s|-c|-l [--control-socket PATH] [--json]``: MIPL 1.x's diagnostic output."""
    parser = argparse.ArgumentParser(
        prog="mipdiag",
        description="Mobile IPv6 diagnostics, as MIPL's mipdiag (Linux Mobile IPv6 HOWTO §5.2).",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-s", dest="what", action="store_const", const="stats", help="statistics")
    group.add_argument("-c", dest="what", action="store_const", const="cache", help="binding cache")
    group.add_argument(
        "-l", dest="what", action="store_const", const="bul", help="binding update list"
    )
    _common(parser)
    args = parser.parse_args(argv)
    path: Path = args.control_socket or default_control_socket()
    answer = _ask(path, {"cmd": args.what}, sys.stderr, "mipdiag")
    if answer is None:
        return 1
    if args.what == "stats":
        lines = format_statistics(answer)
    elif args.what == "cache":
        lines = format_cache(answer)
    else:
        lines = format_bul(answer)
    _emit(answer, lines, args.json, sys.stdout)
    return 0
