"""Every page as a reader sees it on a laptop (1280 px) and on a phone (390 px, touch).

With the network closed (as in test_browser.py), on each page and at both widths:

* the ☰ button opens the table of contents (and on a laptop folds it away again);
* no output shows raw Markdown table text, and the chapter has one H1 (its title);
* no figure is shown below 80% of its natural width (on a phone a figure keeps its size
  and scrolls sideways in its own box, so that its labels stay readable);
* the page itself never scrolls sideways;
* every formula is typeset by MathJax, which the book serves itself;
* no quiz answer, nor its executed check, is visible before its toggle is opened;
* every figure (an output's or a page's) has a numbered caption and real alt text.

Screenshots go to _build/screenshots/<device>/: the top of each page, the open menu, and on
a phone the first figure.
"""

from __future__ import annotations

import re

import pytest

from .test_browser import PAGES, _notebook, visit  # noqa: F401  (visit is a fixture)

pytestmark = pytest.mark.e2e

DEVICES = ["laptop", "phone"]
MIN_SHOWN_FRACTION = 0.8


CASES = [pytest.param(page, device, id=f"{page}-{device}") for page in PAGES for device in DEVICES]


@pytest.mark.parametrize(("page", "device"), CASES)
def test_reader_view(visit, screenshots, page, device):  # noqa: F811  (the visit fixture)
    v = visit(f"{page}.html", device)
    assert v.response is not None and v.response.ok, f"{page}.html did not load"
    where = f"{page} ({device})"
    folder = screenshots / device
    folder.mkdir(exist_ok=True)
    name = page.replace("/", "__")
    _wait_for_math(v.page, where)
    v.page.evaluate("document.fonts.ready.then(() => null)")
    v.page.screenshot(path=str(folder / f"{name}.png"))

    _check_no_sideways_scroll(v.page, where)
    _check_outputs_are_rendered(v.page, where)
    _check_figures(v.page, where, folder / f"{name}-figure.png" if device == "phone" else None)
    nb = _notebook(page)
    if nb is not None:
        _check_quiz_answers_hidden(v.page, nb, where)
    _check_menu_opens(v, where, folder / f"{name}-menu.png")
    assert not v.external, f"{where}: requests to other hosts: {v.external}"
    assert not v.console_errors, f"{where}: console errors:\n" + "\n".join(v.console_errors)


def _wait_for_math(page, where: str) -> None:
    """Every .math element holds a typeset formula (MathJax from _static, no network)."""
    count = page.locator(".math").count()
    if not count:
        return
    try:
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll('.math'))
                       .every(m => m.querySelector('mjx-container'))""",
            timeout=20000,
        )
    except Exception:  # report which formulas stayed as TeX
        raw = page.eval_on_selector_all(
            ".math",
            "ms => ms.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent)",
        )
        pytest.fail(f"{where}: {len(raw)} of {count} formulas not typeset, e.g. {raw[:3]}")


def _check_no_sideways_scroll(page, where: str) -> None:
    overflow = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const scroll = document.scrollingElement.scrollWidth;
            if (scroll <= width + 1) return null;
            // The elements that stick out and are not inside a box that scrolls or clips
            // (code in its own scroll box is fine), to name the culprit in the message.
            const clipped = el => {
                for (let e = el.parentElement; e && e !== document.body; e = e.parentElement)
                    if (getComputedStyle(e).overflowX !== 'visible') return true;
                return false;
            };
            const out = [];
            for (const el of document.querySelectorAll('article *')) {
                const box = el.getBoundingClientRect();
                if (box.right > width + 1 && box.width > 0 && !clipped(el))
                    out.push(`${el.tagName.toLowerCase()}.${el.className} (${Math.round(box.right)} px)`);
            }
            return {width, scroll, offenders: out.slice(0, 6)};
        }"""
    )
    assert overflow is None, f"{where}: the page scrolls sideways: {overflow}"


def _check_outputs_are_rendered(page, where: str) -> None:
    raw = page.eval_on_selector_all(
        "article .cell_output",
        "outs => outs.map(o => o.textContent).filter(t => /\\|\\s*:?-{3,}:?\\s*\\|/.test(t))",
    )
    assert not raw, f"{where}: raw Markdown table text in outputs: {raw[0][:200]!r}"
    titles = page.locator("article h1").count()
    assert titles == 1, f"{where}: {titles} H1 headings (an output's heading became one?)"


def _check_figures(page, where: str, figure_shot) -> None:
    images = page.evaluate(
        """async () => {
            const out = [];
            for (const img of document.querySelectorAll('article.bd-article img')) {
                try { await img.decode(); } catch (e) {}
                img.scrollIntoView();
                const box = img.getBoundingClientRect();
                const figure = img.closest('figure');
                const caption = figure && figure.querySelector('figcaption');
                out.push({
                    src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
                    natural: img.naturalWidth, shown: box.width,
                    visible: box.width > 0 && getComputedStyle(img).visibility !== 'hidden',
                    caption: caption ? caption.textContent.trim() : '',
                    numbered: !!(caption && caption.querySelector('.caption-number')),
                });
            }
            window.scrollTo(0, 0);
            return out;
        }"""
    )
    for image in images:
        label = f"{where}: figure {image['src']}"
        assert image["caption"] and image["numbered"], f"{label} has no numbered caption"
        alt = image["alt"]
        assert len(alt) > 15 and not re.search(r"\.(png|jpe?g|svg)$|/", alt), (
            f"{label}: alt text {alt!r} does not describe the figure"
        )
        if image["visible"] and image["natural"] > 0:
            fraction = image["shown"] / image["natural"]
            assert fraction >= MIN_SHOWN_FRACTION, (
                f"{label} is shown at {fraction:.0%} of its natural width "
                f"({image['shown']:.0f} of {image['natural']} px): its text is too small"
            )
    if figure_shot is not None and images:
        first = page.locator("article.bd-article figure").first
        first.scroll_into_view_if_needed()
        page.screenshot(path=str(figure_shot))
        page.evaluate("window.scrollTo(0, 0)")


def _check_quiz_answers_hidden(page, nb, where: str) -> None:
    checks = sum("quiz-check" in c.metadata.get("tags", []) for c in nb.cells)
    cells = page.locator("div.cell.tag_quiz-check")
    assert cells.count() == checks, f"{where}: {checks} quiz checks, {cells.count()} on the page"
    for i in range(checks):
        inside = cells.nth(i).evaluate("c => !!c.closest('div.admonition.dropdown')")
        assert inside, f"{where}: quiz check {i} is not inside an answer dropdown"
    answers = page.locator("div.admonition.dropdown")
    for i in range(answers.count()):
        shown = answers.nth(i).evaluate(
            """a => Array.from(a.querySelectorAll(':scope > :not(.admonition-title)'))
                    .filter(el => el.getBoundingClientRect().height > 0
                                  && getComputedStyle(el).visibility !== 'hidden')
                    .map(el => el.textContent.trim().slice(0, 80))"""
        )
        assert not shown, f"{where}: answer {i} shows {shown} before its toggle is opened"
    if checks:  # opening the answer shows its executed check
        cell = cells.first
        answer = cell.locator("xpath=ancestor::div[contains(@class, 'dropdown')][1]")
        title = answer.locator(".admonition-title").first
        title.scroll_into_view_if_needed()
        title.click()
        cell.wait_for(state="visible", timeout=5000)
        title.click()  # closed again, for the screenshots that follow


TOC_ON_SCREEN = """() => {
    const link = document.querySelector('nav.bd-docs-nav a.reference.internal');
    const box = link.getBoundingClientRect();
    return link.checkVisibility() && box.right > 0 && box.width > 0;
}"""


def _chapter_links(scope) -> int:
    """How many links of the table of contents a reader can see in ``scope``."""
    return scope.locator("nav.bd-docs-nav a.reference.internal:visible").count()


def _check_menu_opens(v, where: str, shot) -> None:
    page = v.page
    page.evaluate("window.scrollTo(0, 0)")
    toggle = page.locator(".primary-toggle:visible").first
    assert toggle.count() == 1, f"{where}: no visible ☰ button"
    chapters = len(PAGES) - 1
    if v.device == "phone":
        assert _chapter_links(page) == 0, f"{where}: the menu is open before ☰ is tapped"
        toggle.tap()
        dialog = page.locator("#pst-primary-sidebar-modal")
        dialog.wait_for(state="visible", timeout=5000)
        assert _chapter_links(dialog) >= chapters, f"{where}: ☰ opened no table of contents"
        page.screenshot(path=str(shot))
    else:
        assert _chapter_links(page) >= chapters, f"{where}: no table of contents on a laptop"
        toggle.click()  # folds the sidebar away (it slides off the left edge)
        page.wait_for_function(f"() => !({TOC_ON_SCREEN})()", timeout=5000)
        toggle.click()
        page.wait_for_function(TOC_ON_SCREEN, timeout=5000)
        page.screenshot(path=str(shot))
