"""Render a page in headless Chromium, run a probe script in it, read back what the probe found.

Shared by the browser tests of report.html, gallery.html and comparison.html. ``.ci/run`` installs
Debian's ``chromium`` when it is missing; the tests skip (saying why) only where no Chromium can be
found (``CREG_CHROMIUM`` may name a Chrome/Chromium binary).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

#: Helpers every probe may use: ``report(obj)`` writes the result where :func:`probe_page` reads it;
#: ``external()`` counts elements that would fetch something or link out of the page.
PRELUDE = """
function report(obj) {
  const pre = document.createElement("pre"); pre.id = "creg-probe"; pre.textContent = JSON.stringify(obj);
  document.body.appendChild(pre);
}
function external() {
  const src = [...document.querySelectorAll("[src]")].filter(e => !e.getAttribute("src").startsWith("data:")).length;
  const href = [...document.querySelectorAll("[href]")].filter(e => !e.getAttribute("href").startsWith("#")).length;
  return src + href + performance.getEntriesByType("resource").length;
}
function images() {
  const imgs = [...document.images];
  return {n: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length};
}
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return os.environ.get("CREG_CHROMIUM")


def probe_page(page: Path, probe_js: str, tmp_path: Path) -> dict:
    """Open a copy of ``page`` with ``probe_js`` run on load (after the page's own scripts); return
    the object the probe passed to ``report``. The page's Content-Security-Policy is kept; where it
    allows no script at all, the probe's copy allows inline scripts (fetches stay forbidden)."""
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium found: install Debian's `chromium` (apt-get install chromium; .ci/run does it) "
                    "or set CREG_CHROMIUM to a Chrome/Chromium binary")
    text = Path(page).read_text()
    if "default-src 'none'" in text and "script-src" not in text:  # a page without scripts: let the probe run
        text = text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    script = f'<script>{PRELUDE}\nwindow.addEventListener("load", () => {{ {probe_js} }});</script>'
    probe = tmp_path / f"probe-{Path(page).name}"
    probe.write_text(text.replace("</body>", script + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="creg-probe">(.*?)</pre>', done.stdout, re.S)
    assert m, f"Chromium did not run the probe: rc {done.returncode}, {done.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
