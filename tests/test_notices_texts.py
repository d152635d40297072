"""
Tests for L{secudoc_gateway.notices.texts}: the one table of words, the
language rules, and how sizes, dates and times read in every text.
"""

from __future__ import annotations

import datetime
import os
import string
import time
import zoneinfo

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway import config
from secudoc_gateway.notices.texts import (
    LANGUAGES, TEXTS, formatDate, formatMoment, formatTime, humanSize, negotiate, plural, texts,
)

EXPIRES = 1741957500.0  # 14 March 2025, 13:05 UTC, 14:05 in Amsterdam
SUMMER = 1751374800.0  # 1 July 2025, 13:00 UTC


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class TableTests(SynchronousTestCase):
    def test_languages(self) -> None:
        """One list of languages: the table's, and the one the configuration accepts."""
        self.assertEqual(LANGUAGES, ("nl", "en"))
        self.assertEqual(tuple(TEXTS), LANGUAGES)
        self.assertIs(config.LANGUAGES, LANGUAGES)

    def test_sameKeysAndPlaceholders(self) -> None:
        """Every text in both languages, each with the same values to fill in."""
        self.assertEqual(set(TEXTS["nl"]), set(TEXTS["en"]))
        for key, dutch in TEXTS["nl"].items():
            self.assertEqual(placeholders(dutch), placeholders(TEXTS["en"][key]), key)

    def test_unknownLanguageIsEnglish(self) -> None:
        self.assertIs(texts("fr"), TEXTS["en"])


class SizeAndDateTests(SynchronousTestCase):
    def test_humanSize(self) -> None:
        self.assertEqual(humanSize(0, "nl"), "0 bytes")
        self.assertEqual(humanSize(1023, "en"), "1023 bytes")
        self.assertEqual(humanSize(1024, "nl"), "1 KB")
        self.assertEqual(humanSize(1025, "nl"), "2 KB")
        self.assertEqual(humanSize(340 * 1024, "en"), "340 KB")
        self.assertEqual(humanSize(1258291, "nl"), "1,2 MB")
        self.assertEqual(humanSize(1258291, "en"), "1.2 MB")
        self.assertEqual(humanSize(150 * 1024**3, "en"), "150.0 GB")
        self.assertEqual(humanSize(5 * 1024**4, "nl"), "5,0 TB")

    def test_formatDate(self) -> None:
        self.assertEqual(formatDate(datetime.date(2025, 3, 14), "nl"), "14 maart 2025")
        self.assertEqual(formatDate(datetime.datetime(2025, 12, 1, 23, 59), "en"), "1 December 2025")

    def test_formatMoment(self) -> None:
        """Date and time in Amsterdam, the zone named, winter and summer."""
        self.assertEqual(formatMoment(EXPIRES, "nl"), "14 maart 2025 om 14:05 CET")
        self.assertEqual(formatMoment(EXPIRES, "en"), "14 March 2025 at 14:05 CET")
        self.assertEqual(formatMoment(SUMMER, "nl"), "1 juli 2025 om 15:00 CEST")
        self.assertEqual(formatMoment(0.0, "en"), "1 January 1970 at 01:00 CET")

    def test_dateIsAmsterdams(self) -> None:
        """Half past eleven at night in UTC is already the next day in Amsterdam."""
        late = datetime.datetime(2025, 3, 14, 23, 30, tzinfo=datetime.timezone.utc).timestamp()
        self.assertEqual(formatMoment(late, "nl"), "15 maart 2025 om 00:30 CET")

    def test_formatTime(self) -> None:
        self.assertEqual(formatTime(EXPIRES), "14:05 CET")
        self.assertEqual(formatTime(SUMMER), "15:00 CEST")

    def test_machineZoneIgnored(self) -> None:
        """The machine's own zone changes nothing."""
        old = os.environ.get("TZ")

        def restore() -> None:
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "America/New_York"
        time.tzset()
        self.assertEqual(formatMoment(EXPIRES, "en"), "14 March 2025 at 14:05 CET")

    def test_zoneWithoutSystemFiles(self) -> None:
        """
        A machine without zone files still knows Amsterdam: the tzdata
        package, a dependency, is zoneinfo's fallback.
        """
        self.addCleanup(zoneinfo.reset_tzpath)
        zoneinfo.reset_tzpath(to=[])
        zone = zoneinfo.ZoneInfo.no_cache("Europe/Amsterdam")
        self.assertEqual(datetime.datetime.fromtimestamp(SUMMER, zone).tzname(), "CEST")


class LanguageTests(SynchronousTestCase):
    def test_negotiate(self) -> None:
        for header, expected in ((None, "nl"), ("", "nl"), ("en", "en"), ("de, en;q=0.5", "en"),
                                 ("en;q=0.4, nl-BE;q=0.8", "nl"), ("en, nl", "en"), ("nl;q=0, en;q=0.1", "en"),
                                 ("fr", "nl"), ("en;q=bad", "nl")):
            self.assertEqual(negotiate(header, "nl"), expected, header)
        self.assertEqual(negotiate("fr", "en"), "en")

    def test_plural(self) -> None:
        self.assertEqual(plural("nl", 1, "files_one", "files_many"), "1 bestand")
        self.assertEqual(plural("nl", 0, "files_one", "files_many"), "0 bestanden")
        self.assertEqual(plural("en", 3, "files_one", "files_many"), "3 files")
