"""A node of the test bed: one network namespace, commands run in it with ``ip netns exec``."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import IO, Any

from nfq_mip6.testbed.netns import Command, as_argv, run

__all__ = ["Node"]


@dataclass(frozen=True, slots=True)
class Node:
    """A namespace of the test bed; commands run in it through ``ip netns exec``."""

    name: str
    netns: str

    def argv(self, cmd: Command) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *as_argv(cmd)]

    def run(
        self,
        cmd: Command,
        *,
        check: bool = True,
        timeout: float = 10.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in this node and wait; raises ``CommandFailed`` if ``check``."""
        return run(self.argv(cmd), check=check, timeout=timeout, input_text=input_text)

    def popen(
        self,
        cmd: Command,
        *,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        new_session: bool = False,
    ) -> subprocess.Popen[str]:
        """Start ``cmd`` in this node (text mode). The caller waits for or kills it;
        ``Testbed.down()`` kills whatever is left in the namespace."""
        return subprocess.Popen(
            self.argv(cmd),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=new_session,
        )

    def ipv6_addresses(self, ifname: str, link_local: bool = False) -> list[str]:
        """Addresses of ``ifname`` (``ip -6 addr show``), without prefix length; the
        HOWTO's fec0::/10 addresses have scope "site", so no scope filter is used."""
        done = self.run(["ip", "-6", "-j", "addr", "show", "dev", ifname])
        links = json.loads(done.stdout or "[]")
        return [
            str(info["local"])
            for link in links
            for info in link.get("addr_info", [])
            if info.get("family") == "inet6"
            and info.get("scope") != "host"
            and (link_local or info.get("scope") != "link")
        ]

    def ipv6_routes(self, *selector: str) -> list[dict[str, Any]]:
        done = self.run(["ip", "-6", "-j", "route", "show", *selector])
        routes: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return routes
