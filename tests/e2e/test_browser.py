"""The online book as a reader sees it: every page in headless Chromium.

The book is built (warnings are errors) and served on 127.0.0.1; Debian's Chromium opens every
page of _toc.yml. Requests to any other host are refused and recorded (the test network is
closed), so a page that needs the internet to look right shows up here.
A full-page screenshot of every page goes to _build/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import nbformat
import pytest

from .conftest import ROOT, repository, toc_files, toc_numbered

pytestmark = pytest.mark.e2e

PAGES = toc_files()
CHAPTERS = [page for page in PAGES if page.startswith("solutions/")]

# External requests a page may make, each with its reason. They fail in the closed test
# network; their console errors are the only ones allowed. Keep this list short: MathJax is
# served from the book itself, so that the formulas render offline too.
ALLOWED_EXTERNAL_HOSTS: dict[str, str] = {}


def _known_page_errors() -> list[str]:
    """Page errors allowed, each with its reason (only while the fix is not configured)."""
    config = (ROOT / "_config.yml").read_text()
    if "book_fixes" in config:
        return []
    # Sphinx 7.4 writes sphinx-thebe's inline `const THEBE_JS_URL = ...` script twice; the
    # second copy throws. Harmless (thebe is not used); _ext/book_fixes.py removes the copy
    # once _config.yml lists it under sphinx.local_extensions.
    return ["Identifier 'THEBE_JS_URL' has already been declared"]


def _notebook(page: str):
    path = ROOT / f"{page}.ipynb"
    return nbformat.read(path, as_version=4) if path.exists() else None


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in ("127.0.0.1", None)


# The two ways readers meet the book: a laptop, and a phone held upright (touch, mobile).
VIEWPORTS = {
    "laptop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


class Visit:
    """One page in a fresh browser tab, with everything it logged and requested."""

    def __init__(self, browser, url: str, device: str = "laptop"):
        self.device = device
        self.context = browser.new_context(**VIEWPORTS[device])
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.external: list[str] = []
        self.failed_local: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on("console", self._console)
        self.page.on("pageerror", self._page_error)
        self.page.on(
            "requestfailed",
            lambda req: None if not _is_local(req.url) else self.failed_local.append(req.url),
        )
        # Generous: on a loaded machine a long chapter with many formulas takes a while.
        self.response = self.page.goto(url, wait_until="load", timeout=120_000)
        self.page.wait_for_load_state("networkidle")

    def _route(self, route):
        if _is_local(route.request.url):
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort("internetdisconnected")

    def _page_error(self, error):
        if not any(known in str(error) for known in _known_page_errors()):
            self.console_errors.append(f"pageerror: {error}")

    def _console(self, message):
        if message.type != "error":
            return
        source = (message.location or {}).get("url", "")
        host = urlsplit(source).hostname or ""
        if host in ALLOWED_EXTERNAL_HOSTS and message.text.startswith("Failed to load resource"):
            return
        self.console_errors.append(f"{message.text} ({source})")

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, book_server):
    visits = []

    def open_page(path: str, device: str = "laptop") -> Visit:
        visits.append(Visit(browser, f"{book_server}/{path}", device))
        return visits[-1]

    yield open_page
    for v in visits:
        v.close()


@pytest.mark.parametrize("page", PAGES)
def test_page(visit, screenshots, page):
    v = visit(f"{page}.html")
    assert v.response is not None and v.response.ok, f"{page}.html did not load"
    title = v.page.locator("main h1").first.inner_text()
    assert title.strip(), f"{page}: no title"

    # Every image is there and decoded.
    images = v.page.evaluate(
        """async () => Promise.all(Array.from(document.images).map(async img => {
            try { await img.decode(); } catch (e) {}
            return {src: img.currentSrc || img.src, width: img.naturalWidth};
        }))"""
    )
    broken = [image["src"] for image in images if image["width"] == 0]
    assert not broken, f"{page}: images missing or not decodable: {broken}"
    assert not v.failed_local, f"{page}: requests for missing files: {v.failed_local}"

    # The page as a reader first sees it, before the checks below click and scroll.
    name = page.replace("/", "__")
    v.page.evaluate("document.fonts.ready.then(() => null)")  # settled layout, then capture
    v.page.wait_for_timeout(200)
    v.page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    nb = _notebook(page)
    if nb is not None:
        _check_colab_links(v.page, page)
        _check_solutions_toggle(v.page, nb, page)
        _check_widget_fallbacks(v.page, nb, page)
        assert len(images) > 0, f"{page}: a chapter without a single figure"

    unexpected = sorted({urlsplit(u).hostname for u in v.external} - set(ALLOWED_EXTERNAL_HOSTS))
    assert not unexpected, (
        f"{page} requests files from {unexpected}; the book must not depend on them: "
        f"{[u for u in v.external if urlsplit(u).hostname in unexpected]}"
    )
    assert not v.console_errors, f"{page}: console errors:\n" + "\n".join(v.console_errors)


def _check_colab_links(page, name: str) -> None:
    slug, branch = repository()
    stem = Path(name).name
    pattern = re.compile(
        rf"^https://colab\.research\.google\.com/github/{re.escape(slug)}/blob/"
        rf"{re.escape(branch)}/(solutions|chapters)/{re.escape(stem)}\.ipynb$"
    )
    hrefs = page.eval_on_selector_all(
        "a[href*='colab.research.google.com']", "links => links.map(a => a.href)"
    )
    wrong = [href for href in hrefs if not pattern.match(href)]
    assert not wrong, f"{name}: Colab links that do not point at this notebook: {wrong}"
    folders = {pattern.match(href).group(1) for href in hrefs}
    assert folders == {"solutions", "chapters"}, (
        f"{name}: expected links to both the exercise and the solution notebook, got {hrefs}"
    )
    launch = page.locator(".dropdown-launch-buttons a[href*='colab.research.google.com']")
    assert launch.count() == 1, f"{name}: no Colab launch button"
    assert launch.get_attribute("href").endswith(f"/solutions/{stem}.ipynb")
    # In the body, the link to the exercise notebook is visible to the reader.
    body = page.locator(f"article a[href$='/chapters/{stem}.ipynb']")
    assert body.count() >= 1 and body.first.is_visible(), f"{name}: no visible exercise link"


def _check_solutions_toggle(page, nb, name: str) -> None:
    solutions = [
        cell
        for cell in nb.cells
        if cell.metadata.get("nbgrader", {}).get("solution") is True and cell.cell_type == "code"
    ]
    # Written answers (markdown solution cells) sit in a collapsed dropdown admonition.
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            assert ":class: dropdown" in cell.source.splitlines()[1], (
                f"{name}: a written answer is not in a dropdown: {cell.source[:80]!r}"
            )
    answers = page.locator("div.admonition.dropdown")
    for i in range(answers.count()):
        body = answers.nth(i).locator("p:not(.admonition-title)")
        if body.count():
            assert not body.first.is_visible(), f"{name}: dropdown answer {i} is open already"
    for cell in solutions:
        match = re.search(r"^def (\w+)", cell.source, re.MULTILINE)
        needle = match.group(0) if match else cell.source.strip().splitlines()[0]
        toggle = page.locator("div.cell.tag_hide-input", has_text=needle).first
        assert toggle.count() == 1, f"{name}: the solution {needle!r} is not behind a toggle"
        code = toggle.locator("div.cell_input")
        assert not code.is_visible(), f"{name}: the solution {needle!r} is not collapsed"
        toggle.locator("summary").first.click()
        code.wait_for(state="visible", timeout=5000)
        assert needle in code.inner_text(), f"{name}: the toggle did not reveal {needle!r}"


def _check_widget_fallbacks(page, nb, name: str) -> None:
    widgets = [cell for cell in nb.cells if "remove-output" in cell.metadata.get("tags", [])]
    rendered = page.locator("div.cell.tag_remove-output")
    assert rendered.count() == len(widgets), f"{name}: widget cells missing from the page"
    for index in range(rendered.count()):
        cell = rendered.nth(index)
        assert cell.locator(".cell_output").count() == 0, f"{name}: a widget cell has output"
        cell.scroll_into_view_if_needed()
        # The next cell of the page (its direct sibling) draws the static figure.
        fallback = cell.evaluate(
            """cell => {
                let next = cell.nextElementSibling;
                while (next && !next.classList.contains("cell")) next = next.nextElementSibling;
                const img = next && next.querySelector(".cell_output img");
                if (!img) return null;
                img.scrollIntoView();
                const box = img.getBoundingClientRect();
                const style = getComputedStyle(img);
                return {width: img.naturalWidth, shown: box.width > 50 && box.height > 50
                        && style.visibility !== "hidden" && style.display !== "none"};
            }"""
        )
        assert fallback is not None, f"{name}: widget cell {index} has no static figure after it"
        assert fallback["width"] > 0 and fallback["shown"], f"{name}: widget {index}: {fallback}"


def test_search_finds_a_word(visit):
    v = visit(f"search.html?q={quote('discounted')}")
    results = v.page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=20000)
    assert results.count() >= 1
    links = results.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert any("ch00_how_to_use" in href for href in links), links
    assert not v.console_errors, "\n".join(v.console_errors)


def test_chapters_are_numbered(visit):
    """Chapter pages carry their number: Sphinx's numbering when _toc.yml says `numbered`,
    otherwise the number in the title, taken from the file name (chNN_...)."""
    for page in CHAPTERS:
        v = visit(f"{page}.html")
        title = v.page.locator("main h1").first.inner_text().strip()
        if toc_numbered():
            assert re.match(r"^\d+(\.\d+)*\.?\s", title), f"{page}: unnumbered title {title!r}"
        else:
            number = int(re.match(r"ch(\d+)", Path(page).name).group(1))
            assert re.match(rf"^{number}\.\s", title), f"{page}: title {title!r} lacks {number}."
