"""``mipdiag -s|-c|-l`` and ``nfq-mip6 stats|cache|bul|ro`` against a fake agent.

The golden texts are the HOWTO §5.2 listings (indentation of the HOWTO removed).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.cli import main, mipdiag_main
from nfq_mip6.control import ControlServer
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES

HOWTO_STATS = """\
Mobile IPv6 Statistics
NEncapsulations           : 0
NDecapsulations           : 0
NBindUpdatesRcvd          : 0
NBindAcksRcvd             : 1
NBindNAcksRcvd            : 0
NBindRqsRcvd              : 0
NBindUpdatesSent          : 1
NBindAcksSent             : 0
NBindNAcksSent            : 0
NBindRqsSent              : 0
NBindUpdatesDropAuth      : 0
NBindUpdatesDropInvalid   : 0
NBindUpdatesDropMisc      : 0
NBindAcksDropAuth         : 0
NBindAcksDropInvalid      : 0
NBindAcksDropMisc         : 0
NBindRqsDropAuth          : 0
NBindRqsDropInvalid       : 0
NBindRqsDropMisc          : 0
"""

HOWTO_BUL = """\
Mobile IPv6 Binding update list
Recipient CN: fec0:106:2700::2
BINDING home address: fec0:106:2700::4 care-of address: fec0:106:1100:0:290:7dff:fef3:31a
        expires: 936 sequence: 0 state: 1
        delay: 3 max delay 32 callback time: 736
"""

HOWTO_CACHE = (
    "Mobile IPv6 Binding cache\n"
    "Home Address      Care-of Address                    Lifetime  Type \n"
    "fec0:106:2700::4  fec0:106:1100:0:290:7dff:fef3:31a  971       2    \n"
)

COUNTERS = dict.fromkeys(MIPL_COUNTER_NAMES, 0) | {"NBindAcksRcvd": 1, "NBindUpdatesSent": 1}
STATS = {
    "ok": True,
    "role": "mn",
    "counters": COUNTERS,
    "route_optimization": True,
    "backend": "seg6",
    "bindings": 1,
    "nfqueue": {"accepted": 5, "dropped": 1, "rewritten": 2},
}
CACHE = {
    "ok": True,
    "bindings": [
        {
            "home_address": "fec0:106:2700::4",
            "care_of_address": "fec0:106:1100:0:290:7dff:fef3:31a",
            "lifetime": 971,
            "type": 2,
            "sequence": 0,
            "flags": "AH",
            "state": "registered",
        }
    ],
}
BUL = {
    "ok": True,
    "entries": [
        {
            "recipient": "fec0:106:2700::2",
            "home_address": "fec0:106:2700::4",
            "care_of_address": "fec0:106:1100:0:290:7dff:fef3:31a",
            "expires": 936,
            "sequence": 0,
            "state": 1,
            "delay": 3,
            "max_delay": 32,
            "callback_time": 736,
            "home_registration": True,
        }
    ],
}


class FakeAgent:
    def __init__(self) -> None:
        self.route_optimization = True
        self.requests: list[dict[str, Any]] = []

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(command)
        cmd = command["cmd"]
        if cmd == "stats":
            return STATS
        if cmd == "cache":
            return CACHE
        if cmd == "bul":
            return BUL
        if cmd == "ro":
            if "set" in command:
                self.route_optimization = bool(command["set"])
            return {"ok": True, "route_optimization": self.route_optimization}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


@contextlib.contextmanager
def serving(path: Path, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[None]:
    """A ControlServer on ``path`` answering with ``handler``, its selector loop in a thread."""
    server = ControlServer(path, handler)
    selector = selectors.DefaultSelector()
    server.register(selector)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for key, _ in selector.select(0.05):
                key.data()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()
        selector.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[FakeAgent, Path]]:
    fake = FakeAgent()
    path = tmp_path / "agent.sock"
    with serving(path, fake.handle):
        yield fake, path


def test_mipdiag_s(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert mipdiag_main(["-s", "--control-socket", str(agent[1])]) == 0
    assert capsys.readouterr().out == HOWTO_STATS


def test_mipdiag_l(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert mipdiag_main(["-l", "--control-socket", str(agent[1])]) == 0
    assert capsys.readouterr().out == HOWTO_BUL


def test_mipdiag_c(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert mipdiag_main(["-c", "--control-socket", str(agent[1])]) == 0
    assert capsys.readouterr().out == HOWTO_CACHE


def test_mipdiag_json(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert mipdiag_main(["-c", "--json", "--control-socket", str(agent[1])]) == 0
    assert json.loads(capsys.readouterr().out) == CACHE


def test_mipdiag_empty_cache_and_long_addresses(
    agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from nfq_mip6.control_cli import format_cache

    assert format_cache({"bindings": []}) == [
        "Mobile IPv6 Binding cache",
        "Home Address      Care-of Address                    Lifetime  Type ",
    ]
    long_hoa = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"
    lines = format_cache(
        {
            "bindings": [
                {
                    "home_address": long_hoa,
                    "care_of_address": "2001:db8::1",
                    "lifetime": 5,
                    "type": 1,
                }
            ]
        }
    )
    # The columns widen; they still line up.
    assert lines[1].index("Care-of") == lines[2].index("2001:db8::1")


def test_mipdiag_needs_an_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        mipdiag_main([])
    assert info.value.code == 2


def test_mipdiag_no_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mipdiag_main(["-s", "--control-socket", str(tmp_path / "none.sock")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no agent is listening on" in captured.err


@pytest.mark.parametrize("command", ["stats", "cache", "bul", "ro"])
def test_nfq_mip6_no_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main([command, "--control-socket", str(tmp_path / "none.sock")]) == 1
    assert "no agent is listening on" in capsys.readouterr().err


def test_nfq_mip6_stats(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--control-socket", str(agent[1])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(HOWTO_STATS)
    assert "Route optimization        : on\n" in out
    assert "Fast-path backend         : seg6\n" in out
    assert "NFQUEUE rewritten         : 2\n" in out


def test_nfq_mip6_stats_json(
    agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--json", "--control-socket", str(agent[1])]) == 0
    assert json.loads(capsys.readouterr().out) == STATS


def test_nfq_mip6_cache(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "--control-socket", str(agent[1])]) == 0
    assert capsys.readouterr().out == (
        "Mobile IPv6 Binding cache\n"
        "Home Address      Care-of Address                    Lifetime  Type   Sequence  Flags"
        "  State\n"
        "fec0:106:2700::4  fec0:106:1100:0:290:7dff:fef3:31a  971       2      0         AH   "
        "  registered\n"
    )


def test_nfq_mip6_bul(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bul", "--control-socket", str(agent[1])]) == 0
    assert capsys.readouterr().out == HOWTO_BUL


def test_nfq_mip6_ro(agent: tuple[FakeAgent, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fake, path = agent
    assert main(["ro", "--control-socket", str(path)]) == 0
    assert capsys.readouterr().out == "route optimization: on\n"
    assert main(["ro", "off", "--control-socket", str(path)]) == 0
    assert capsys.readouterr().out == "route optimization: off\n"
    assert fake.requests[-1] == {"cmd": "ro", "set": False}
    assert main(["ro", "on", "--json", "--control-socket", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "route_optimization": True}
    assert main(["ro", "status", "--control-socket", str(path)]) == 0
    assert fake.requests[-1] == {"cmd": "ro"}


def test_refusal_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.sock"
    refusal = {"ok": False, "error": "role cn has no binding update list"}
    with serving(path, lambda _c: refusal):
        assert mipdiag_main(["-l", "--control-socket", str(path)]) == 1
        assert "role cn has no binding update list" in capsys.readouterr().err


def test_environment_default_socket(
    agent: tuple[FakeAgent, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NFQ_MIP6_AGENT__CONTROL_SOCKET", str(agent[1]))
    assert mipdiag_main(["-s"]) == 0
    assert capsys.readouterr().out == HOWTO_STATS


def test_mipdiag_cache_lists_a_mobile_routers_prefixes() -> None:
    """RFC 3963: a mobile router's row is followed by its Mobile Network Prefixes."""
    from nfq_mip6.control_cli import format_cache

    cache = {
        "bindings": [
            {
                "home_address": "fec0:106:2700::4",
                "care_of_address": "fec0:106:1100::10",
                "lifetime": 400,
                "type": 2,
                "prefixes": ["2001:db8:77::/48", "2001:db8:78::/48"],
            },
            {
                "home_address": "fec0:106:2700::5",
                "care_of_address": "fec0:106:1100::11",
                "lifetime": 400,
                "type": 2,
                "prefixes": [],
            },
        ]
    }
    for extended in (False, True):
        lines = format_cache(cache, extended=extended)
        assert lines[2].startswith("fec0:106:2700::4")
        assert lines[3] == "    Mobile Network Prefixes: 2001:db8:77::/48, 2001:db8:78::/48"
        assert lines[4].startswith("fec0:106:2700::5") and len(lines) == 5
