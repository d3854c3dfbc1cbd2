"""Role runtimes: the I/O side of the Home Agent, Mobile Node and Correspondent Node roles.

:func:`create_runtime` imports the role's module lazily so that a Home Agent never imports
the Mobile Node's dependencies (and vice versa).
"""

from __future__ import annotations

import importlib

from nfq_mip6.errors import ConfigurationError
from nfq_mip6.runtime.base import RoleRuntime, RuntimeContext, Verdict, VerdictKind

__all__ = [
    "RUNTIME_CLASSES",
    "RoleRuntime",
    "RuntimeContext",
    "UnsupportedRole",
    "Verdict",
    "VerdictKind",
    "create_runtime",
]

# role value (config.Role) -> (module, class)
RUNTIME_CLASSES: dict[str, tuple[str, str]] = {
    "ha": ("nfq_mip6.runtime.home_agent", "HomeAgentRuntime"),
    "mn": ("nfq_mip6.runtime.mobile_node", "MobileNodeRuntime"),
    "cn": ("nfq_mip6.runtime.correspondent", "CorrespondentRuntime"),
}


class UnsupportedRole(ConfigurationError, RuntimeError):
    """No runtime is available for the configured role."""


def create_runtime(role: str) -> RoleRuntime:
    """Instantiate the runtime for ``role`` (``"ha"``, ``"mn"`` or ``"cn"``)."""
    try:
        module_name, class_name = RUNTIME_CLASSES[str(role)]
    except KeyError:
        raise UnsupportedRole(f"unknown role {role!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UnsupportedRole(f"role {role!r} is not implemented ({module_name})") from None
    runtime: RoleRuntime = getattr(module, class_name)()
    return runtime
