"""The demo's summary says in one line why the first move differs (RFC 6275 §10.3.1)."""

from __future__ import annotations

from nfq_mip6.demo import _first_move_note


def test_first_move_note_names_proxy_dad_and_the_home_link_wait() -> None:
    note = _first_move_note("visitnet", {"nd_dad_transmits": 1, "nd_dad_wait_ms": 200})
    assert "\n" not in note
    assert note.startswith("visitnet is the first registration")
    assert "proxy DAD" in note and "RFC 6275 §10.3.1" in note and "200 ms" in note


def test_first_move_note_without_ha_stats_gives_the_rfc_default() -> None:
    assert "1 s by default" in _first_move_note("visitnet", {})
