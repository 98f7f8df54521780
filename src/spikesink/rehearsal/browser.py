"""The Snakemake report as a reader sees it: opened in headless Chromium, checked through its DOM.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL on file descriptors 3 and 4), so nothing but the browser is needed. The
check opens the report, waits for its app to render, and asks the page itself:

* the landing page shows the scorecard first: the first table of the page has the scorecard's
  columns, and its header is on the first screen, not covered by anything (the element at the
  centre of its first cell is that cell);
* every result the report embeds loads: each figure is shown the way the report's own result
  view shows it (the app's `setView`), and the `<img>` it renders must decode to a non-empty
  image whose bytes are whole (a PNG cut short still shows its first rows); other embedded files
  must decode from their data URI;
* no link is broken: every `href` on the page is an anchor, an embedded data URI that decodes,
  a script action or an external address; a relative path (a file next to the report, absent
  from a copy sent by mail) is broken.

It saves a screenshot of the landing page and returns what it found (`ReportCheck`).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VIEWPORT = (1400, 1000)


class BrowserError(RuntimeError):
    """Chromium is missing, did not answer, or the page raised an error."""


class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or shutil.which("chromium") or shutil.which("chromium-browser")
        if not self.executable:
            raise BrowserError("chromium not found: apt-get install -y chromium")
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="spikesink-chromium-")
        to_browser, from_us = os.pipe()  # the browser reads commands on its fd 3
        to_us, from_browser = os.pipe()  # and writes answers on its fd 4
        # bash puts them at 3 and 4 (from copies at 10 or above, so neither end can be overwritten;
        # dash cannot name descriptors above 9, and a preexec_fn is unsafe beside threads)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
        for fd in (to_browser, from_browser):
            os.close(fd)
        to_browser, from_browser = high
        flags = [
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={self._profile}",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}', self.executable, *flags],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._write, self._read = from_us, to_us
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=VIEWPORT[0],
            height=VIEWPORT[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------ the protocol

    def call(self, method: str, session: bool = False, **params) -> dict:
        """Send one command; return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            self._events.append(answer)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise BrowserError("chromium stopped answering")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"page error: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    def open(self, url: str, ready: str, timeout: float = 60.0) -> None:
        """Navigate to `url` and wait until the JavaScript expression `ready` is true."""
        self.call("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: the page did not get ready ({ready}) within {timeout:.0f} s")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])
        path.write_bytes(data)
        return data


# ---------------------------------------------------------------- the report

# In the page: the scorecard is the first table of the landing page (the workflow description)
LANDING = """(() => {
  const tables = [...document.querySelectorAll('table')];
  if (!tables.length) return null;
  const first = tables[0];
  const header = [...first.querySelectorAll('thead th, tr:first-child th')].map(th => th.textContent.trim());
  const rows = first.querySelectorAll('tbody tr').length;
  // the first header cell must be on screen and not covered (by the menu, by the rule graph)
  const cell = first.querySelector('th').getBoundingClientRect();
  const hit = document.elementFromPoint(cell.left + cell.width / 2, cell.top + cell.height / 2);
  return {tables: tables.length, header: header, rows: rows, top: cell.top, left: cell.left,
          height: window.innerHeight, visible: !!(hit && first.contains(hit))};
})()"""

# In the page: show one embedded result as the report's result view does; report what rendered
SHOW_RESULT = """(async (path) => {
  const entry = results[path];
  const mime = entry.mime_type || '';
  if (mime.startsWith('image/')) {
    app.setView({content: 'img', contentPath: entry.data_uri});
    for (let i = 0; i < 100; i++) {
      const img = [...document.querySelectorAll('img')].find(im => im.getAttribute('src') === entry.data_uri);
      if (img) {
        try { await img.decode(); } catch (err) { return {path, kind: 'img', ok: false, why: String(err)}; }
        // a PNG cut short still decodes its first rows: it must also end with its IEND chunk
        const bytes = new Uint8Array(await (await fetch(entry.data_uri)).arrayBuffer());
        const iend = [0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82];
        const whole = mime !== 'image/png' || iend.every((b, i) => bytes[bytes.length - 8 + i] === b);
        return {path, kind: 'img', ok: whole && img.naturalWidth > 0 && img.naturalHeight > 0,
                width: img.naturalWidth, height: img.naturalHeight, bytes: bytes.length,
                why: whole ? undefined : 'the PNG is cut short (no IEND chunk)'};
      }
      await new Promise(r => setTimeout(r, 50));
    }
    return {path, kind: 'img', ok: false, why: 'the result view rendered no image'};
  }
  const bytes = new Uint8Array(await (await fetch(entry.data_uri)).arrayBuffer());
  const head = String.fromCharCode(...bytes.slice(0, 5));
  const ok = bytes.length > 0 && (mime !== 'application/pdf' || head === '%PDF-');
  return {path, kind: mime, ok, bytes: bytes.length};
})(ARGUMENT)"""

# In the page: decode a PNG (the screenshot) and count its distinct colours: a blank page has a few
COLOURS = """(async (uri) => {
  const img = new Image();
  img.src = uri;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < pixels.length && seen.size < 4096; i += 4 * 7) seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
  return seen.size;
})(ARGUMENT)"""

LINKS = """(async () => {
  const out = [];
  for (const a of document.querySelectorAll('a[href]')) {
    const href = a.getAttribute('href');
    let kind = 'relative';
    if (href.startsWith('#')) kind = 'anchor';
    else if (href.startsWith('javascript:')) kind = 'script';
    else if (/^(https?|mailto):/.test(href)) kind = 'external';
    else if (href.startsWith('data:')) {
      try { kind = (await (await fetch(href)).arrayBuffer()).byteLength > 0 ? 'data' : 'broken'; }
      catch (err) { kind = 'broken'; }
    }
    out.push({href: href.slice(0, 120), kind, text: a.textContent.trim().slice(0, 60)});
  }
  return out;
})()"""


def call(function: str, argument) -> str:
    """A page function's source applied to one JSON argument."""
    return function.replace("ARGUMENT", json.dumps(argument))


@dataclass
class ReportCheck:
    scorecard_first: bool
    scorecard_rows: int
    results: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)
    screenshot: str = ""
    screenshot_colours: int = 0
    seconds: float = 0.0

    @property
    def failed_results(self) -> list[dict]:
        return [r for r in self.results if not r.get("ok")]

    @property
    def broken_links(self) -> list[dict]:
        return [link for link in self.links if link["kind"] in ("relative", "broken")]

    @property
    def ok(self) -> bool:
        return (
            self.scorecard_first
            and not self.failed_results
            and not self.broken_links
            and self.screenshot_colours > 16  # a rendered page, not a blank one
        )

    def problems(self) -> list[str]:
        out = [] if self.scorecard_first else ["the scorecard is not the first thing on the landing page"]
        out += [f"{r['path']} does not load: {r.get('why', r)}" for r in self.failed_results]
        out += [f"broken link {link['href']!r} ({link['text']})" for link in self.broken_links]
        if self.screenshot_colours <= 16:
            out.append(f"the screenshot is blank ({self.screenshot_colours} colours)")
        return out


def check_report(
    report: Path, screenshot: Path, scorecard_columns=("claim", "model", "paper", "ours", "verdict")
) -> ReportCheck:
    """Open `report` in headless Chromium and check it (see the module doc); save `screenshot`."""
    started = time.perf_counter()
    report = Path(report).resolve()
    with Chromium() as browser:
        browser.open(
            report.as_uri(), ready="typeof app !== 'undefined' && document.querySelectorAll('table').length > 0"
        )
        landing = browser.evaluate(LANDING) or {}
        header = [h.lower() for h in landing.get("header", [])]
        first = all(c in header for c in scorecard_columns) and bool(landing.get("visible"))
        shot = browser.screenshot(Path(screenshot))
        links = browser.evaluate(LINKS)
        paths = browser.evaluate("Object.keys(results)")
        shown = [browser.evaluate(call(SHOW_RESULT, path)) for path in paths]
        colours = browser.evaluate(call(COLOURS, "data:image/png;base64," + base64.b64encode(shot).decode()))
    return ReportCheck(
        scorecard_first=first,
        scorecard_rows=int(landing.get("rows", 0)),
        results=shown,
        links=links,
        screenshot=str(screenshot),
        screenshot_colours=int(colours),
        seconds=time.perf_counter() - started,
    )
