"""What stands between the browser and the machine: the session token, the Origin check and
paths confined to the project's roots.

The server binds to localhost by default, but any web page the user opens can still make the
browser send requests to it; the token (which such a page cannot know) and the Origin check
(which it cannot forge) refuse them. Paths from the browser are resolved (symlinks followed)
and must stay inside one of the roots.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

COOKIE = "faceswap_ui"
HEADER = "X-Faceswap-Token"


class PathRefused(Exception):
    """A path from the browser that is outside the roots, or not a path at all."""


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_ok(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The Host headers to serve when bound to the loopback (a page whose name was rebound to
    127.0.0.1 sends its own name and is refused); None (any) when bound elsewhere, where the
    machine's names are not known here and the token is the guard."""
    if host not in LOOPBACK:
        return None
    return {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}


def origin_ok(origin: str | None, host: str) -> bool:
    """Same origin only. Browsers send Origin on every POST and on cross-site requests; one that
    is not this server's own address comes from another site's page. None: a same-origin GET
    or a non-browser client (which still needs the token)."""
    return origin is None or origin in (f"http://{host}", f"https://{host}")


@dataclass
class Roots:
    """The folders the browser may name: the project folder (written) and media roots (read)."""

    project: Path
    media: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.project = self.project.resolve()
        self.media = [m.resolve() for m in self.media]

    @property
    def all(self) -> list[Path]:
        return [self.project, *[m for m in self.media if m != self.project]]

    def resolve(self, raw: object, *, must_exist: bool = False, writable: bool = False) -> Path:
        """The real path of `raw` (absolute, or relative to the project) if it lies inside a
        root (the project alone when `writable`); PathRefused otherwise."""
        if not isinstance(raw, str) or not raw or "\x00" in raw or len(raw) > 4096:
            raise PathRefused(f"not a path: {raw!r}")
        if ".." in Path(raw).parts:
            raise PathRefused(f"{raw}: '..' is not allowed in paths")
        p = Path(raw) if os.path.isabs(raw) else self.project / raw
        real = p.resolve()  # follows symlinks: a link pointing out of the roots is refused
        roots = [self.project] if writable else self.all
        if not any(real == r or r in real.parents for r in roots):
            where = "the project folder" if writable else "the project's roots"
            raise PathRefused(f"{raw}: outside {where}")
        if must_exist and not real.exists():
            raise PathRefused(f"{raw}: does not exist")
        return real

    def show(self, p: Path) -> str:
        """A path as the browser sees it: relative to the project when inside it."""
        try:
            return str(p.relative_to(self.project)) or "."
        except ValueError:
            return str(p)
