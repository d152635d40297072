"""
The portal's pages as a table of routes: a method, a path pattern below
``/portal/`` (``transfers/{id}/revoke``), who may ask (anyone, a
signed-in person, an admin) and the handler.  Each page module exports
its ``ROUTES``; the site joins them, so a new page (settings, SAML's
own) is a new module and one line, never an edit of the dispatcher.
Matching is pure: segments in, a route and its parameters out.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Optional, Sequence

import attrs

# Who may ask for a route.
PUBLIC = "public"
SIGNED_IN = "signed-in"
ADMIN_ONLY = "admin"

Handler = Callable[..., Coroutine[Any, Any, None]]


@attrs.frozen
class Route:
    method: str
    pattern: str
    handler: Handler
    access: str = SIGNED_IN

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.pattern.split("/")) if self.pattern else ()

    def match(self, segments: Sequence[str]) -> Optional[dict[str, str]]:
        """The parameters if ``segments`` fit the pattern (a ``{name}`` takes one non-empty segment)."""
        mine = self.segments
        if len(mine) != len(segments):
            return None
        found = {}
        for want, got in zip(mine, segments):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                found[want[1:-1]] = got
            elif want != got:
                return None
        return found


@attrs.frozen
class Match:
    """What a request found: its route and parameters, or (``route`` None) whether the path has other methods."""

    route: Optional[Route]
    params: dict[str, str]
    otherMethods: bool = False


def resolve(routes: Sequence[Route], method: str, segments: Sequence[str]) -> Match:
    """The route for ``method`` on ``segments``; HEAD asks what GET would answer."""
    method = "GET" if method == "HEAD" else method
    other = False
    for route in routes:
        params = route.match(segments)
        if params is None:
            continue
        if route.method == method:
            return Match(route, params)
        other = True
    return Match(None, {}, other)
