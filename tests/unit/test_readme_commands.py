"""The README's two commands are the ones CI runs (``.ci/run``, as root, no ``sudo``): a fresh
machine used as root may have no ``sudo`` at all."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no ```sh block under '## The two commands'"
    lines = (line.strip() for line in block.group(1).splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    (command,) = [line for line in lines if line.startswith("exec ")]
    return command.removeprefix("exec ").strip()


def test_readme_gives_the_two_commands_without_sudo_and_says_as_root() -> None:
    assert _readme_commands() == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The two commands")[1]
    assert "root shell" in section.split("```sh", 1)[0]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    assert _ci_command() == _readme_commands()[1]
    assert "sudo" not in shlex.split(_ci_command())


def test_no_doc_repeats_the_commands_with_sudo() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    scripts = sorted((ROOT / "scripts").glob("*.sh"))
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in (*docs, *scripts)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bsudo\s+(bash|\.venv|nfq-mip6|apt-get)\b", line)
    ]
    assert offenders == []
