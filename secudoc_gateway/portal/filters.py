"""
The filter form above an admin's lists (transfers, the download trail,
the admin events, the message trace): each field as typed, shown again
in the form, and the days it names.  A day that is not ``YYYY-MM-DD``
makes the page a 400 with the form's message, never an empty list that
would look like an answer.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import Optional, Sequence

import attrs

from secudoc_gateway.addresses import addressKey
from secudoc_gateway.notices.texts import ZONE
from secudoc_gateway.portal.pages import Visit
from secudoc_gateway.web.pages import formValue

DAYS = ("since", "until")
DAY_LIMIT = 10
TEXT_LIMIT = 320


def parseDay(text: str, after: bool = False) -> Optional[float]:
    """
    ``YYYY-MM-DD`` as the start of that day in Europe/Amsterdam (the
    zone every page shows), or of the next day when ``after`` (an
    inclusive "until"); ``None`` for anything else.
    """
    try:
        day = datetime.date.fromisoformat(text.strip())
    except ValueError:
        return None
    if after:
        day += datetime.timedelta(days=1)
    return datetime.datetime.combine(day, datetime.time(), ZONE).timestamp()


@attrs.frozen
class Filters:
    """
    ``form`` is what the template shows (each field as typed, and
    ``error``); ``since`` and ``until`` the range its days mean.
    """

    form: dict[str, str]
    since: Optional[float] = None
    until: Optional[float] = None

    @property
    def error(self) -> str:
        return self.form["error"]

    def text(self, name: str) -> Optional[str]:
        return self.form[name] or None

    def address(self, name: str) -> Optional[str]:
        """A typed address as the store keeps it (any case), ``None`` when the field is empty."""
        return addressKey(self.form[name]) if self.form[name] else None

    def query(self) -> str:
        """The filled-in fields as a query string (``?a=b``, or empty): the CSV link's."""
        filled = urllib.parse.urlencode([(k, v) for k, v in self.form.items() if k != "error" and v])
        return f"?{filled}" if filled else ""


def readFilters(visit: Visit, names: Sequence[str]) -> Filters:
    """The form's ``names`` from the request; ``since`` and ``until`` are days, the others text."""
    form = {name: (formValue(visit.request, name, DAY_LIMIT if name in DAYS else TEXT_LIMIT) or "").strip()
            for name in names}
    since = parseDay(form["since"]) if form.get("since") else None
    until = parseDay(form["until"], after=True) if form.get("until") else None
    wrong = (form.get("since") and since is None) or (form.get("until") and until is None)
    form["error"] = visit.t["bad_date"] if wrong else ""
    return Filters(form, since, until)
