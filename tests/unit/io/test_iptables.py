"""rules/*.rules templates and the RuleSet loader's parsing (no root, no ip6tables)."""

from __future__ import annotations

import re
import string

import pytest

from nfq_mip6.control_cli import format_ip6tables
from nfq_mip6.io.iptables import RulesError, RuleSet, backend_of_version, rules_path

HA_PARAMS = {
    "queue": 5,
    "bypass": " --queue-bypass",
    "ha_address": "fec0:106:2700::2",
    "home_prefix": "fec0:106:2700::/64",
    "ha_anycast": "fec0:106:2700:0:fdff:ffff:ffff:fffe",
    "mss": 1400,
    "mss_above": 1401,
    "seg6_only": "",
    "interface": "eth0",
    "nd_mark": "0x6275",
}
BUILTINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def params_for(name: str) -> dict[str, object]:
    """HA_PARAMS plus a placeholder value for whatever else the file asks for."""
    wanted = {
        field
        for line in rules_path(name).read_text().splitlines()
        if not line.strip().startswith("#")
        for _text, field, _spec, _conv in string.Formatter().parse(line)
        if field
    }
    return {**{field: "fec0:106:2700::4" for field in wanted}, **HA_PARAMS}


@pytest.mark.parametrize("name", ["ha.rules", "mn.rules", "cn.rules"])
def test_every_rule_file_renders_and_touches_only_its_own_chains(name: str) -> None:
    rules = RuleSet.from_file(rules_path(name), params_for(name))
    assert "{" not in rules.text and "#" not in rules.text
    owned = {chain for _table, chain in rules.chains()}
    assert owned and all(chain.startswith("NFQMIP6-") for chain in owned)
    for line in rules.text.splitlines():
        match = re.match(r"^-([AIDFX])\s+(\S+)", line)
        if match is None:
            continue
        op, chain = match.groups()
        if chain in BUILTINS:
            # Only jumps into our chains go into built-in chains.
            assert op == "I" and re.search(r"-j NFQMIP6-\S+$", line), line
        else:
            assert chain in owned, line
    assert rules.text.count("COMMIT") == len({table for table, _ in rules.chains()})


def test_ha_rules_queue_mh_hao_rh2_and_dhaad_with_the_configured_queue() -> None:
    rules = RuleSet.from_file(rules_path("ha.rules"), HA_PARAMS)
    queued = [line for line in rules.text.splitlines() if "-j NFQUEUE" in line]
    assert all(line.endswith("--queue-num 5 --queue-bypass") for line in queued), queued
    text = rules.text
    assert "-d fec0:106:2700::2/128 -p mh -j NFQUEUE" in text
    assert "-m ipv6header --soft --header dst" in text
    assert "-m rt --rt-type 2" in text
    assert "--icmpv6-type 144" in text
    assert "-j TCPMSS --set-mss 1400" in text and "--mss 1401:65535" in text
    assert "-d fec0:106:2700::2/128 -p 41 -j DROP" in text
    assert rules.hooks() == [
        ("raw", "PREROUTING", "-j NFQMIP6-HA-PRE"),
        ("mangle", "PREROUTING", "-j NFQMIP6-HA-MSS"),
        ("mangle", "OUTPUT", "-j NFQMIP6-HA-OUT"),
        ("filter", "INPUT", "-j NFQMIP6-HA-IN"),
        ("filter", "FORWARD", "-j NFQMIP6-HA-FWD"),
    ]


def test_without_bypass_the_signalling_rules_fail_closed_but_the_slow_path_fails_open() -> None:
    rules = RuleSet.from_file(rules_path("ha.rules"), {**HA_PARAMS, "bypass": ""})
    for line in rules.text.splitlines():
        if "-j NFQUEUE" in line:
            fail_open = line.startswith("-A NFQMIP6-HA-FWD") or (
                "--icmpv6-type" in line
                and ("unreachable" in line or "exceeded" in line or "parameter" in line)
            )
            assert line.endswith("--queue-bypass") == fail_open, line


def test_a_missing_placeholder_is_a_clear_error() -> None:
    with pytest.raises(RulesError, match="ha_address"):
        RuleSet.from_file(rules_path("ha.rules"), {"queue": 0, "bypass": ""})


def test_unknown_rule_file() -> None:
    with pytest.raises(RulesError, match="not found"):
        rules_path("nope.rules")


def test_the_ip6tnl_backend_drops_the_reverse_tunnel_source_check_rule() -> None:
    rules = RuleSet.from_file(rules_path("ha.rules"), {**HA_PARAMS, "seg6_only": "#"})
    assert "-p 41 -j DROP" not in rules.text
    assert "-A NFQMIP6-HA-IN" not in rules.text and ":NFQMIP6-HA-IN" in rules.text


def test_home_link_neighbour_solicitations_are_marked_for_the_nd_policy_rules() -> None:
    """§10.4.1: NS for home-prefix addresses get the mark the 938/939 policy rules route by
    (local, then main), so they never take a proxied HoA's tunnel route."""
    rules = RuleSet.from_file(rules_path("ha.rules"), HA_PARAMS)
    assert (
        "-A NFQMIP6-HA-MSS -i eth0 -d fec0:106:2700::/64 -p icmpv6 --icmpv6-type "
        "neighbour-solicitation -j MARK --set-xmark 0x6275/0xffffffff"
    ) in rules.text.splitlines()


def test_neighbor_discovery_to_a_bound_home_address_is_never_queued_for_the_rh2_rewrite() -> None:
    """The per-binding rules of NFQMIP6-HA-OUT are appended after these RETURNs: the HA's
    NA to a home address (the MN back home, still bound) stays on the link (RFC 4861)."""
    rules = RuleSet.from_file(rules_path("ha.rules"), HA_PARAMS)
    returns = [line for line in rules.text.splitlines() if line.startswith("-A NFQMIP6-HA-OUT")]
    assert [line.split("--icmpv6-type ")[1].split()[0] for line in returns] == [
        "router-solicitation",
        "router-advertisement",
        "neighbour-solicitation",
        "neighbour-advertisement",
    ]  # a Redirect to a bound HoA is queued: the agent drops it
    assert all(line.endswith("-j RETURN") for line in returns)


@pytest.mark.parametrize(
    ("line", "backend"),
    [
        ("ip6tables v1.8.9 (nf_tables)", "nft"),
        ("ip6tables v1.8.7 (legacy)", "legacy"),
        ("ip6tables v1.6.1", "unknown"),
        ("", "unknown"),
    ],
)
def test_backend_named_from_the_version_line(line: str, backend: str) -> None:
    assert backend_of_version(line) == backend


def test_stats_name_the_backend_and_the_chains_loaded() -> None:
    rules = RuleSet.from_file(rules_path("ha.rules"), HA_PARAMS)
    names = rules.chain_names()
    assert names and all(re.fullmatch(r"(raw|mangle|filter)/NFQMIP6-\S+", n) for n in names)
    lines = format_ip6tables({"backend": "nft", "version": "ip6tables v1.8.9", "chains": names})
    assert lines[0].endswith(": nft (ip6tables v1.8.9)")
    assert lines[1].endswith(": " + ", ".join(names))
    assert format_ip6tables({"backend": "legacy", "chains": []})[1].endswith("none loaded")


def test_icmp_errors_to_the_ha_are_queued_for_the_rfc_2473_relay() -> None:
    rules = RuleSet.from_file(rules_path("ha.rules"), HA_PARAMS)
    for kind in ("destination-unreachable", "time-exceeded", "parameter-problem"):
        assert (
            f"-A NFQMIP6-HA-PRE -d fec0:106:2700::2/128 -p icmpv6 --icmpv6-type {kind} "
            "-j NFQUEUE --queue-num 5 --queue-bypass"
        ) in rules.text
