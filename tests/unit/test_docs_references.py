"""Docs live in the repository: no file points to a document outside it, and every pointer to
a section of docs/kernel-notes.md or docs/protocol-notes.md names a section that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("nfq_mip6", "tests", "bench", "scripts", "deploy", "rules", "docs", ".ci")
TOP_FILES = ("README.md", "Dockerfile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".sh", ".rules", ".toml", ".yaml", ".yml", ".conf", ".json", ".c", ""}

# Documents that are not in this repository, as the code used to cite them.
OUTSIDE = re.compile(
    r"facts §|facts' |notes Q\d|dataplane notes|rfc6275-facts|linux-dataplane-notes|"
    r"bpf-ro-notes|scale-out-design|style-anchors|container-notes|/work/shared"
)
SECTION_POINTER = re.compile(r"(kernel|protocol)-notes(?:\.md)?,? §(\d+)(?:[–-]§?(\d+))?")


def _files() -> list[Path]:
    found = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for top in SCANNED:
        base = ROOT / top
        if base.is_dir():
            found += [
                p
                for p in base.rglob("*")
                if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
            ]
    return sorted(found)


def _sections(page: str) -> set[int]:
    text = (ROOT / "docs" / f"{page}-notes.md").read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.M)}


def test_the_notes_pages_have_numbered_sections() -> None:
    assert _sections("kernel") and _sections("protocol")


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pointer_outside_the_repository(path: Path) -> None:
    if path == Path(__file__).resolve():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    bad = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for m in OUTSIDE.finditer(text)
    ]
    assert not bad, f"{path.relative_to(ROOT)} cites documents outside the repository: {bad}"
    sections = {"kernel": _sections("kernel"), "protocol": _sections("protocol")}
    for m in SECTION_POINTER.finditer(text):
        first, last = int(m.group(2)), int(m.group(3) or m.group(2))
        missing = set(range(first, last + 1)) - sections[m.group(1)]
        assert not missing, f"{path.relative_to(ROOT)}: {m.group(0)!r} names no such section"
