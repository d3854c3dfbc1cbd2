"""nfq_mip6.logsetup: text and JSON lines, DEBUGLEVEL mapping, per-binding adapter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nfq_mip6.logsetup import binding_logger, level_from_name, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0, logging.WARNING),
        ("1", logging.INFO),
        (2, logging.DEBUG),
        ("5", logging.DEBUG),
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        ("warn", logging.WARNING),
        ("Error", logging.ERROR),
    ],
)
def test_level_from_name(given: str | int, expected: int) -> None:
    assert level_from_name(given) == expected


def test_bad_level_and_format() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        level_from_name("loud")
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("info", "xml")


def test_text_lines(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "text", stream=stream)
    logging.getLogger("nfq_mip6.test").info("hello %s", "world")
    logging.getLogger("nfq_mip6.test").debug("hidden")
    line = stream.getvalue()
    assert line.endswith(" INFO nfq_mip6.test: hello world\n")
    assert "hidden" not in line


def test_json_lines_and_binding_adapter(restore_root: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream=stream)
    log = binding_logger(logging.getLogger("nfq_mip6.ha"), "fec0:106:2700::4")
    log.debug("binding registered", extra={"lifetime": 971})
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "DEBUG"
    assert entry["logger"] == "nfq_mip6.ha"
    assert entry["msg"] == "[fec0:106:2700::4] binding registered"
    assert entry["hoa"] == "fec0:106:2700::4"
    assert entry["lifetime"] == 971
    assert entry["ts"].endswith("Z")


def test_setup_twice_replaces_handler(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "text", stream=first)
    setup_logging("info", "json", stream=second)
    logging.getLogger("nfq_mip6.x").warning("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "once"
