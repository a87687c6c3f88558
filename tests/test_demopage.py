"""The demo page at /, in headless Chromium, against the real gateway and Python service.

Debian's `chromium` is driven by Playwright through `executable_path` (no browser
download; `make setup` installs the package). The page is given held-out digits from
scikit-learn through `tandemDemo.paintPixels` (the function the pad draws with), then
the Classify button is clicked, as a user would; a second test draws with the mouse.
The semantic search section is typed into and its Rank button clicked, against a stack
that serves `minilm` besides the digits models, and one that does not.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright
from tandem_stack.stack import MODELS, TRANSPORTS, Stack, model_subset

from conftest import MODEL_NAMES

# Debian's package installs it as /usr/bin/chromium.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMING_PARTS = ["edge", "hop", "python", "queue", "model"]
TRACE_LINK = re.compile(r"http://localhost:16686/trace/([0-9a-f]{32})")
TEXT_MODEL = "minilm"
# Candidates for the search, one not ASCII; each query below paraphrases one of them
# (its index) in other words.
SENTENCES = [
    "A man is playing a guitar.",
    "The stock market fell sharply after the rate decision.",
    "How do I reset my password?",
    "Photosynthesis turns sunlight into chemical energy.",
    "Le chat dort sur le canapé près de la fenêtre.",
    "Two dogs are running through a field of snow.",
]
PARAPHRASES = [
    ("I can't remember my login and need to change it", 2),
    ("Share prices dropped steeply once interest rates were announced", 1),
    ("Someone is strumming an acoustic guitar", 0),
    ("Puppies racing across the snowy meadow", 5),
]


@pytest.fixture(scope="session")
def search_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits models and minilm (links to models/)."""
    assert (MODELS / TEXT_MODEL / "1").is_dir(), "models/minilm is not built: run `make models`"
    return model_subset([*MODEL_NAMES, TEXT_MODEL], tmp_path_factory.mktemp("search-models"))


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(request: pytest.FixtureRequest, search_repository: Path) -> Iterator[Stack]:
    """conftest's stack, serving minilm too, so that every section of the page works."""
    with Stack(transport=request.param, models=search_repository) as s:
        yield s
    for proc in s.processes:
        assert proc.popen is not None
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}\n{s.logs()}"


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

    def rank_by_click(self, sentences: list[str], query: str) -> None:
        """Type the sentences and the query in, click Rank, wait for what it shows."""
        self.page.fill("#sentences", "\n".join(sentences))
        self.page.fill("#query", query)
        self.page.evaluate("document.getElementById('search').dataset.state = 'idle'")
        self.page.click("#rank")
        self.page.wait_for_selector('#search[data-state="done"]')

    def ranking(self) -> list[tuple[int, float, str]]:
        """The ranked list as shown: (line of the sentence, score, its text), top first."""
        return [
            (int(line), float(score), text)
            for line, score, text in self.page.eval_on_selector_all(
                "#search .ranking li",
                "lis => lis.map(li => [li.dataset.line, li.dataset.score,"
                " li.querySelector('.s').textContent])",
            )
        ]

    def errors_besides(self, url: str, status: int) -> list[str]:
        """The console's errors other than Chromium's report of `status` for `url`
        (it logs every refused fetch, which the page itself shows)."""
        seen = f"status of {status} "
        return [e for e in self.errors if not (seen in e and e.endswith(f" at {url}"))]


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
            url = msg.location.get("url") or ""
            if msg.type == "error" and "favicon.ico" not in url:
                demo.errors.append(f"{msg.text} at {url}")

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


def test_the_page_needs_the_key_the_api_needs(search_repository: Path) -> None:
    """With API keys, the page itself is public but its infer calls are the API's: without
    a key each model says 401 and why; with the key typed in, they answer, and the search
    finds minilm ready and ranks with the key."""
    with (
        Stack(gateway_args=["--api-keys", "demo-key"], models=search_repository) as s,
        open_demo(s) as d,
    ):
        # The search asks whether minilm is ready, an API call too: it cannot know yet.
        assert d.page.is_disabled("#rank")
        status = d.page.inner_text("#search .status")
        assert "wants an API key" in status, status
        assert "401: " in status, status
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
        # Typing the key asked again: minilm is ready, and Rank sends the key too.
        d.page.wait_for_selector("#rank:enabled")
        assert d.page.is_hidden("#search .status")
        d.rank_by_click(SENTENCES, PARAPHRASES[0][0])
        assert d.page.is_hidden("#search .error"), d.page.inner_text("#search .error")
        assert d.ranking()[0][0] == PARAPHRASES[0][1]


def embed(stack: Stack, texts: list[str]) -> np.ndarray:
    """minilm's embeddings of `texts`, asked for directly, as the page asks (one request)."""
    resp = httpx.post(
        f"{stack.rest_url}/v2/models/{TEXT_MODEL}/infer",
        json={
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def check_search_timing_and_trace(demo: Demo) -> str:
    """The search's request shows its Server-Timing bar and trace link, as a card does;
    gives the trace's id."""
    assert demo.page.is_visible("#search .timing")
    segments = demo.page.locator("#search .bar span")
    assert [segments.nth(i).get_attribute("data-name") for i in range(segments.count())] == (
        TIMING_PARTS
    )
    widths = demo.page.eval_on_selector_all(
        "#search .bar span", "spans => spans.map(s => parseFloat(s.style.width))"
    )
    assert sum(widths) == pytest.approx(100, abs=0.01)
    m = TRACE_LINK.fullmatch(demo.page.get_attribute("#search .trace", "href") or "")
    assert m, demo.page.get_attribute("#search .trace", "href")
    return m.group(1)


def test_semantic_search_ranks_the_paraphrased_sentence_first(demo: Demo, stack: Stack) -> None:
    """Each query, a paraphrase of one candidate, ranks that candidate first; the scores are
    cosines (in [-1, 1], most similar first) and are what minilm's embeddings give."""
    assert demo.page.is_enabled("#rank")
    assert demo.page.is_hidden("#search .status")
    assert demo.page.inner_text("#search .transport").startswith(stack.transport.upper())
    # The page comes with sentences and a query of its own, ready to rank.
    prefilled = [s for s in demo.page.input_value("#sentences").splitlines() if s.strip()]
    assert len(prefilled) >= 5
    assert any(not s.isascii() for s in prefilled)
    assert demo.page.input_value("#query")
    trace_ids = set()
    for query, want in PARAPHRASES:
        demo.rank_by_click(SENTENCES, query)
        assert demo.page.is_hidden("#search .error"), demo.page.inner_text("#search .error")
        ranked = demo.ranking()
        assert sorted(line for line, _, _ in ranked) == list(range(len(SENTENCES)))
        assert ranked[0][0] == want, (query, ranked)
        assert ranked[0][2] == SENTENCES[want]
        assert all(text == SENTENCES[line] for line, _, text in ranked)
        scores = [score for _, score, _ in ranked]
        assert scores == sorted(scores, reverse=True)
        assert all(-1 <= score <= 1 for score in scores), scores
        # The page's scores are the dot products of the embeddings minilm gives for the
        # same request, and the top one shows as the top of the list.
        e = embed(stack, [*SENTENCES, query])
        want_scores = e[:-1] @ e[-1]
        assert [want_scores[line] for line, _, _ in ranked] == pytest.approx(scores, abs=1e-4)
        shown = demo.page.inner_text("#search .ranking li.top .v")
        assert shown == f"{scores[0]:.3f}"
        trace_ids.add(check_search_timing_and_trace(demo))
    assert len(trace_ids) == len(PARAPHRASES)
    assert not demo.errors
    assert not demo.foreign


def test_semantic_search_shows_the_gateways_refusal(demo: Demo, stack: Stack) -> None:
    """A sentence over minilm's 16 KiB is refused (400): the section shows the gateway's
    message, and no longer the last ranking, which was not for these sentences."""
    demo.rank_by_click(SENTENCES, PARAPHRASES[0][0])
    assert len(demo.ranking()) == len(SENTENCES)
    demo.rank_by_click([*SENTENCES, "x" * 17000], PARAPHRASES[0][0])
    err = demo.page.inner_text("#search .error")
    assert err.startswith('400: input "text": element 6 is 17000 bytes'), err
    assert "max_text_bytes 16384" in err
    assert demo.ranking() == []
    assert demo.page.is_hidden("#search .timing")
    assert demo.page.is_hidden("#search .trace")
    # Rank stays on: the next sentences may be fine.
    assert demo.page.is_enabled("#rank")
    infer_url = f"{stack.rest_url}/v2/models/{TEXT_MODEL}/infer"
    assert not demo.errors_besides(infer_url, 400)
    assert demo.errors, "Chromium logs the refused request"


def test_without_minilm_the_search_is_off() -> None:
    """A gateway whose repository has no minilm: the section says so, with the gateway's
    message, and Rank is disabled; the digits still work."""
    with Stack() as s, open_demo(s) as d:
        assert d.page.is_disabled("#rank")
        status = d.page.inner_text("#search .status")
        assert "minilm is not in this gateway's repository" in status, status
        assert '404: model "minilm" not found' in status, status
        assert d.ranking() == []
        d.page.evaluate("v => window.tandemDemo.paintPixels(v)", [8] * 64)
        d.classify_by_click()
        assert all(d.predicted(m) in set("0123456789") for m in MODEL_NAMES)
        ready_url = f"{s.rest_url}/v2/models/{TEXT_MODEL}/ready"
        assert not d.errors_besides(ready_url, 404)
