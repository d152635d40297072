"""
Renders the banner as the README shows it: the text form printed (nl
and en), the HTML form as screenshots taken with headless Chromium at a
desktop mail reader's width and a phone's, written beside this file.

    PYTHONPATH=. .venv/bin/python docs/render_banner.py

Not part of ``make test``: it needs Debian's chromium
(``apt-get install chromium``) and only refreshes pictures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from secudoc_gateway.notices.banner import bannerFor

HERE = os.path.dirname(os.path.abspath(__file__))
EXPIRES = 1741957500.0  # 14 March 2025, 14:05 in Amsterdam
LINK = "https://download.vandijk.example/t/5Hq0cVnY1m2xTQe7sRz0b9KkJf3LwPa8dEuG4oNiX6M"
FILES = [("Offerte 2025-031 – Zoë de Vries.pdf", 1258291), ("Plattegrond begane grond.dwg", 348160)]
BODY = {
    "nl": "<p>Beste Bob,</p><p>Hierbij de offerte en de plattegrond.</p><p>Met vriendelijke groet,<br>Zo&euml;</p>",
    "en": "<p>Dear Bob,</p><p>Please find the quote and the floor plan.</p><p>Kind regards,<br>Zo&euml;</p>",
}
SIZES = {"": (760, 540), "-phone": (390, 600)}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


def banner(language: str):  # type: ignore[no-untyped-def]
    return bannerFor(
        language, "zoe.devries@vandijk.example", FILES, LINK, EXPIRES,
        "Dit bericht is vertrouwelijk." if language == "nl" else "This message is confidential.",
        senderName="Zoë de Vries", organisation="Van Dijk & Zonen B.V.",
        helpContact="servicedesk@vandijk.example",
    )


def page(language: str) -> str:
    """The banner where the gateway puts it: right after the message's <body> tag."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="margin:16px;font-family:Calibri,Arial,sans-serif;font-size:15px">'
        + banner(language).html + BODY[language] + "</body></html>"
    )


def screenshot(chromium: str, html: str, target: str, size: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "banner.html")
        with open(source, "w", encoding="ascii") as f:
            f.write(html)
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={folder}/profile", f"--screenshot={target}",
             f"--window-size={size[0]},{size[1]}", "file://" + source],
            check=True, capture_output=True, timeout=120,
        )


def main() -> int:
    chromium = shutil.which("chromium")
    for language in ("nl", "en"):
        print(f"--- {language} (text/plain) ---")
        print(banner(language).text)
        if chromium is None:
            continue
        for suffix, size in SIZES.items():
            target = os.path.join(HERE, f"banner-{language}{suffix}.png")
            screenshot(chromium, page(language), target, size)
            print(f"wrote {os.path.relpath(target)}")
    if chromium is None:
        print("chromium not found: no screenshots (apt-get install chromium)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
