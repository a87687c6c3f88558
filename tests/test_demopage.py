"""The demo page at /, in headless Chromium, against the real gateway and Python service.

Debian's `chromium` is driven by Playwright through `executable_path` (no browser
download; `make setup` installs the package). The page is given held-out digits from
scikit-learn through `tandemDemo.paintPixels` (the function the pad draws with), then
the Classify button is clicked, as a user would; a second test draws with the mouse.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright
from tandem_stack.stack import Stack

from conftest import MODEL_NAMES

# Debian's package installs it as /usr/bin/chromium.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMING_PARTS = ["edge", "hop", "python", "queue", "model"]
TRACE_LINK = re.compile(r"http://localhost:16686/trace/([0-9a-f]{32})")


@dataclass
class Demo:
    """The page, and what it did that it should not have."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def card(self, model: str) -> str:
        return f'.model[data-model="{model}"]'

    def classify_by_click(self) -> None:
        self.page.evaluate("document.body.dataset.state = 'idle'")
        self.page.click("#classify")
        self.page.wait_for_selector('body[data-state="done"]')

    def predicted(self, model: str) -> str:
        return self.page.inner_text(f"{self.card(model)} .class")


@contextmanager
def open_demo(stack: Stack) -> Iterator[Demo]:
    """The demo page of a running stack in headless Chromium. Playwright's sync API runs
    an event loop of its own, so it starts after the stack (whose start uses asyncio)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        demo = Demo(page, stack.rest_url)

        def console(msg: ConsoleMessage) -> None:
            # A violation of the Content-Security-Policy is reported here too.
            if msg.type == "error" and "favicon.ico" not in (msg.location.get("url") or ""):
                demo.errors.append(msg.text)

        def request(req: Request) -> None:
            if not req.url.startswith(stack.rest_url + "/"):
                demo.foreign.append(req.url)

        page.on("console", console)
        page.on("pageerror", lambda exc: demo.errors.append(str(exc)))
        page.on("request", request)
        page.goto(stack.rest_url + "/")
        page.evaluate("window.tandemDemo.ready")
        yield demo
        browser.close()


@pytest.fixture
def demo(stack: Stack) -> Iterator[Demo]:
    """A browser per test: Playwright's loop must not be running while a stack starts
    (the next module's, or a test's own)."""
    with open_demo(stack) as d:
        yield d


def first_of_each_class(
    digits: tuple[np.ndarray, np.ndarray], reference: np.ndarray
) -> list[tuple[np.ndarray, int]]:
    """One held-out digit per class, the first that the model gets right (it is 97.5%
    accurate, so the page must give the true label for these)."""
    x, y = digits
    picked: dict[int, np.ndarray] = {}
    for pixels, label, probs in zip(x, y, reference, strict=True):
        if int(label) not in picked and int(np.argmax(probs)) == int(label):
            picked[int(label)] = pixels
    assert sorted(picked) == list(range(10))
    return [(picked[k], k) for k in range(10)]


def test_painted_digits_get_their_class_from_both_models(
    demo: Demo,
    stack: Stack,
    digits: tuple[np.ndarray, np.ndarray],
    reference: np.ndarray,
) -> None:
    transport = demo.page.inner_text("#transport")
    assert transport.startswith(stack.transport.upper()), transport
    for pixels, label in first_of_each_class(digits, reference):
        values = [int(v) for v in pixels]
        demo.page.evaluate("v => window.tandemDemo.paintPixels(v)", values)
        # What the page sends is what was painted: the 8x8 reading is exact.
        assert demo.page.evaluate("window.tandemDemo.pixels()") == values
        demo.classify_by_click()
        for model in MODEL_NAMES:
            card = demo.card(model)
            assert demo.page.is_hidden(f"{card} .error"), demo.page.inner_text(f"{card} .error")
            assert demo.predicted(model) == str(label), (model, label)
            assert demo.page.locator(f"{card} .probabilities li").count() == 10
            assert demo.page.inner_text(f"{card} .probabilities li.top .v").startswith(f"{label}: ")
    check_breakdown_and_trace_links(demo)
    assert not demo.errors
    assert not demo.foreign


def check_breakdown_and_trace_links(demo: Demo) -> None:
    """After a request, each model shows its Server-Timing parts as a bar whose
    segments add up to the whole, and a link to a trace id of its own."""
    trace_ids = []
    for model in MODEL_NAMES:
        card = demo.card(model)
        assert demo.page.is_visible(f"{card} .timing")
        segments = demo.page.locator(f"{card} .bar span")
        names = [segments.nth(i).get_attribute("data-name") for i in range(segments.count())]
        assert names == TIMING_PARTS
        widths = demo.page.eval_on_selector_all(
            f"{card} .bar span", "spans => spans.map(s => parseFloat(s.style.width))"
        )
        assert sum(widths) == pytest.approx(100, abs=0.01)
        legend = demo.page.inner_text(f"{card} .legend")
        assert all(re.search(rf"{p} \d+\.\d{{3}} ms", legend) for p in TIMING_PARTS), legend
        href = demo.page.get_attribute(f"{card} .trace", "href") or ""
        m = TRACE_LINK.fullmatch(href)
        assert m, href
        trace_ids.append(m.group(1))
    # One trace per request: the page starts each with a traceparent of its own.
    assert len(set(trace_ids)) == len(MODEL_NAMES)


def test_drawing_with_the_mouse(demo: Demo) -> None:
    """A stroke drawn with the mouse is read as ink 0-16 in the cells it crossed and is
    classified on release, the same by both backends (they share the weights)."""
    demo.page.click("#clear")
    box = demo.page.locator("#pad").bounding_box()
    assert box is not None
    demo.page.evaluate("document.body.dataset.state = 'idle'")
    x = box["x"] + box["width"] / 2
    demo.page.mouse.move(x, box["y"] + box["height"] * 0.15)
    demo.page.mouse.down()
    demo.page.mouse.move(x, box["y"] + box["height"] * 0.85, steps=20)
    demo.page.mouse.up()
    demo.page.wait_for_selector('body[data-state="done"]')
    grid = np.array(demo.page.evaluate("window.tandemDemo.pixels()")).reshape(8, 8)
    assert grid.min() >= 0
    assert grid.max() <= 16
    # A vertical stroke through the middle: ink in the middle columns, none at the edges.
    assert grid[2:6, 3:5].min() > 0, grid
    assert grid[:, [0, 7]].max() == 0, grid
    classes = {demo.predicted(m) for m in MODEL_NAMES}
    assert len(classes) == 1, classes
    assert classes <= set("0123456789"), classes
    assert not demo.errors


def test_the_page_needs_the_key_the_api_needs() -> None:
    """With API keys, the page itself is public but its infer calls are the API's: without
    a key each model says 401 and why; with the key typed in, they answer."""
    with Stack(gateway_args=["--api-keys", "demo-key"]) as s, open_demo(s) as d:
        d.page.evaluate("v => window.tandemDemo.paintPixels(v)", [8] * 64)
        d.classify_by_click()
        for model in MODEL_NAMES:
            err = d.page.inner_text(f"{d.card(model)} .error")
            assert err.startswith("401: "), err
            assert d.predicted(model) == "\N{EN DASH}"  # no class shown
        d.page.fill("#key", "demo-key")
        d.classify_by_click()
        for model in MODEL_NAMES:
            assert d.page.is_hidden(f"{d.card(model)} .error")
            assert d.predicted(model) in set("0123456789")
