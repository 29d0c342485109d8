"""What an operator allows connectors to reach; each connector config checks itself against it
when a connector is created (and again when a sync builds it, in case the settings changed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput


@dataclass(frozen=True)
class AccessPolicy:
    filesystem_roots: tuple[Path, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_bytes: int = 50 * 1024 * 1024

    def check_path(self, path: Path, what: str) -> Path:
        """Resolved (symlinks followed) and inside an allowed root, or InvalidInput."""
        resolved = path.expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self.filesystem_roots]
        if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
            allowed = ", ".join(str(r) for r in roots) or "none configured"
            raise InvalidInput(
                f"{what} {str(path)!r} is outside the allowed directories ({allowed}); an operator "
                "adds directories with CAIRN_CONNECTORS__FILESYSTEM_ROOTS",
                field="config",
            )
        return resolved

    def check_host(self, host: str | None, what: str) -> None:
        if "*" in self.allowed_hosts or (host and host.lower() in {h.lower() for h in self.allowed_hosts}):
            return
        allowed = ", ".join(self.allowed_hosts) or "none configured"
        raise InvalidInput(
            f"{what} host {host!r} is not allowed ({allowed}); an operator adds hosts with "
            "CAIRN_CONNECTORS__ALLOWED_HOSTS",
            field="config",
        )
