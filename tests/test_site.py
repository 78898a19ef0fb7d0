"""The built docs site, checked in a real headless Chromium: every page loads
without console errors or failed requests, every internal link (and #anchor)
resolves, every image renders, and the guides, notebooks, benchmark tables and
API reference are all there.

`make docs` builds the site into build/site and runs this file with
RECURRAX_SITE=build/site; then a missing site, browser or Playwright is a
failure. Without RECURRAX_SITE (the ordinary suite) the file is skipped: the
site's build executes every guide, minutes that belong to `make docs`.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("RECURRAX_SITE", ROOT / "build" / "site"))
pytestmark = pytest.mark.skipif("RECURRAX_SITE" not in os.environ, reason="set RECURRAX_SITE, or run `make docs`")
# Debian's chromium; flags that let it run as root in a container with no GPU,
# and keep it from calling home (the check must see only the site's own requests).
CHROMIUM = os.environ.get("RECURRAX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What the page's own script reports about itself once loaded: links, ids, images.
SNAPSHOT = """() => ({
  links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
  ids: Array.from(document.querySelectorAll('[id], a[name]'), e => e.id || e.getAttribute('name')),
  images: Array.from(document.images, i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
  tables: document.querySelectorAll('article table').length,
  outputImages: document.querySelectorAll('.cell_output img').length,
  outputs: document.querySelectorAll('.cell_output').length,
})"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports failures itself
        pass


@pytest.fixture(scope="module")
def crawl():
    """Visits every HTML page of the site once; returns what each page showed and did."""
    assert (SITE / "index.html").is_file(), f"no site at {SITE}: build it with `make docs`"
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM}: apt-get install chromium"
    from playwright.sync_api import sync_playwright  # the docs extra

    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    pages = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html"))
    result = {"base": base, "pages": {}, "problems": {}}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            problems: list[str] = []
            # Off-site images (the notebooks' "Open in Colab" badge) cannot load
            # where CI has no network; anything else off-site (a script, a style
            # sheet from a CDN) is a problem: the site must work on its own.
            offsite_images: set[str] = set()

            def on_failed(request) -> None:
                if request.resource_type == "image" and not request.url.startswith(base):
                    offsite_images.add(request.url)
                elif request.failure != "net::ERR_ABORTED":  # still in flight after "load", cut by the next goto
                    problems.append(f"request failed: {request.url} ({request.failure})")

            def on_console(message) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text} ({message.location.get('url')})")

            page.on("console", on_console)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", on_failed)
            page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
            for path in pages:
                problems.clear()
                if path == "index.html":  # the site root only sends the browser on to the landing page
                    page.goto(base + path)
                    page.wait_for_url(base + "docs/index.html", wait_until="load")
                    result["problems"][path] = list(problems)
                    continue
                response = page.goto(base + path, wait_until="load")
                if response is None or response.status != 200:
                    problems.append(f"HTTP {response.status if response else 'no response'}")
                result["pages"][page.url.split("#")[0]] = page.evaluate(SNAPSHOT)
                result["problems"][path] = [p for p in problems if not any(url in p for url in offsite_images)]
            browser.close()
        # Link targets that are not pages (images, downloads, static files) answer over HTTP.
        targets = {
            link.split("#")[0]
            for snapshot in result["pages"].values()
            for link in snapshot["links"]
            if link.startswith(base)
        }
        result["status"] = {url: _status(url) for url in sorted(targets - set(result["pages"]))}
    finally:
        server.shutdown()
        server.server_close()
    return result


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_page_loads_without_console_errors_or_failed_requests(crawl):
    assert len(crawl["pages"]) >= 20, sorted(crawl["pages"])
    bad = {path: problems for path, problems in crawl["problems"].items() if problems}
    assert not bad


def test_every_internal_link_and_anchor_resolves(crawl):
    base, pages = crawl["base"], crawl["pages"]
    broken = []
    for url, snapshot in pages.items():
        for link in snapshot["links"]:
            if not link.startswith(base):
                continue  # another site: not this check's business, and unreachable from CI
            target, _, fragment = link.partition("#")
            if target in pages:
                if fragment and urllib.parse.unquote(fragment) not in pages[target]["ids"]:
                    broken.append(f"{url} -> {link}: no #{fragment} there")
            elif crawl["status"].get(target) != 200:
                broken.append(f"{url} -> {link}: HTTP {crawl['status'].get(target)}")
    assert not broken


def test_every_image_renders(crawl):
    images = [(url, image) for url, snapshot in crawl["pages"].items() for image in snapshot["images"]]
    assert images, "the site shows no images at all"
    # Off-site images are out of reach of a CI machine (see the crawl); the site's own must render.
    assert not [
        (url, image["src"]) for url, image in images if not image["ok"] and image["src"].startswith(crawl["base"])
    ]


def test_the_site_has_guides_notebooks_benchmarks_and_api(crawl):
    pages = {url.removeprefix(crawl["base"]): snapshot for url, snapshot in crawl["pages"].items()}
    guides = sorted(p.stem for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    for name in guides:
        assert f"docs/{name}.html" in pages, f"docs/{name}.md is not on the site"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shown = pages.get(f"notebooks/{notebook.stem}.html")
        assert shown is not None, f"{notebook.name} is not on the site"
        assert shown["outputImages"] > 0, f"{notebook.name} is shown without its figures"
    for table in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        shown = pages.get(f"benchmarks/results/{table.stem}.html")
        assert shown is not None and shown["tables"] > 0, f"{table.name}: its table is not on the site"
    # The guide pages' Python ran at build time: printed output appears under the blocks.
    assert pages["docs/architecture.html"]["outputs"] > 0
    assert [url for url in pages if url.startswith("docs/api/")], "no API reference"
    assert any(
        image["src"].endswith("training_gradient_flow_adding.png") for image in pages["docs/training.html"]["images"]
    )
