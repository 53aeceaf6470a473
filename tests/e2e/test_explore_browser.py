"""The explorer in a real headless Chromium (Debian's, driven by Playwright's Python package): the served app on
the built-in sentiment model, and the inline view of one result opened from a file.

Locally these skip without Chromium or Playwright; under CI (``CI`` set) they fail instead (.ci/run installs
Chromium). ``pytest tests/e2e/test_explore_browser.py --screenshots docs/img`` also saves the README's screenshot.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import attrflow
from attrflow.methods.registry import method_names
from browsers import FLAGS, chromium_or_skip, playwright_or_skip

TWEET = "i love this new phone , the camera is amazing and the battery lasts all day <img src=x onerror=alert(1)>"
XSS = "<img src=x onerror=alert(1)>"


class Served:
    """``attrflow explore`` as a subprocess on a free port; its output is collected."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attrflow", "explore", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                found = re.search(r"serving on (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(180) or self.url is None:
            self.process.kill()
            raise RuntimeError("attrflow explore did not start:\n" + "".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    chromium_or_skip()
    playwright_or_skip()
    server = Served("--model", "sentiment")
    yield server
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped (SIGTERM)" in "".join(server.lines)


class Browser:
    """One Chromium page with everything it did recorded: requests, console errors, page errors, dialogs."""

    def __init__(self, playwright: Any, executable: str) -> None:
        self.browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS))
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def close(self) -> None:
        self.context.close()
        self.browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_or_skip()
    sync_playwright = playwright_or_skip()
    with sync_playwright() as playwright:
        opened = Browser(playwright, executable)
        try:
            yield opened
        finally:
            opened.close()


def _until(page: Any, expression: str, arg: Any = None, timeout: float = 60) -> None:
    """Poll ``expression`` until it is truthy (``wait_for_function`` evaluates strings, which the page's CSP refuses:
    the tests keep the CSP on)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        time.sleep(0.05)


def _wait_drawn(page: Any, generation: int) -> None:
    _until(
        page,
        "g => { const r = document.getElementById('explore'); return Number(r.dataset.drawnGeneration) >= g; }",
        generation,
        timeout=180,
    )


def _download(page: Any, selector: str) -> bytes:
    with page.expect_download(timeout=30_000) as caught:
        page.click(selector)
    path = caught.value.path()
    return Path(path).read_bytes()


def _not_blank(png: bytes) -> None:
    PIL = pytest.importorskip("PIL.Image")
    image = PIL.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 22)
    assert colours is not None and len(colours) > 100
    reds = sum(count for count, (r, g, b) in colours if r > g + 60 and r > b + 60)
    assert reds > 200  # highlighted tokens and edges, not an empty page
    assert image.convert("L").getextrema()[0] < 80  # dark text somewhere


def test_the_served_explorer_in_a_real_browser(served: Served, browser: Browser, request: pytest.FixtureRequest):
    page, url = browser.page, served.url
    assert url is not None and url.startswith("http://127.0.0.1:")
    page.goto(url)
    page.wait_for_selector("#explore[data-state=idle]")
    methods = page.eval_on_selector_all(
        "[data-testid=methods] input[type=checkbox]", "nodes => nodes.map(n => n.value)"
    )
    assert methods == list(method_names())  # the page lists the registry and names none

    # type a sentence, press Explain
    page.fill("[data-testid=text]", TWEET)
    page.click("[data-testid=explain]")
    _wait_drawn(page, 1)
    assert re.search(r"(positive|negative)\s+p = 0\.\d+", page.inner_text("[data-testid=prediction]"))
    tokens = page.eval_on_selector_all("[data-testid=token]", "nodes => nodes.map(n => n.textContent)")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "<" in tokens
    rows = page.eval_on_selector_all("#x-score-grid .name[data-method]", "nodes => nodes.map(n => n.dataset.method)")
    defaults = [m for m in methods if page.is_checked(f"[data-testid=methods] input[value='{m}']")]
    assert rows == defaults and len(rows) >= 2

    # the hostile input is text: no element was made from it, nothing ran
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.input_value("[data-testid=text]") == TWEET and not browser.dialogs

    # switch the flow graph's method; the drawing changes
    graph = "[data-testid=flow-graph]"
    before = page.inner_html(graph)
    sources = page.eval_on_selector_all("[data-testid=graph-method] option", "nodes => nodes.map(n => n.value)")
    assert len(sources) >= 3
    page.select_option("[data-testid=graph-method]", sources[1])
    _until(page, f"document.querySelector('{graph}').dataset.source === {json.dumps(sources[1])}")
    assert page.inner_html(graph) != before

    # move the threshold: more edges at a lower one
    edges_at = {}
    for value in ("0.5", "0.02"):
        page.eval_on_selector(
            "[data-testid=threshold]", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value
        )
        _until(page, f"document.querySelector('{graph}').dataset.threshold === '{value}'")
        edges_at[value] = int(page.get_attribute(graph, "data-edges"))
    assert edges_at["0.02"] > edges_at["0.5"] >= 1

    # click a token: its column is selected and the graph highlights what it reaches and what reaches it
    page.click("[data-testid=token][data-index='3']")
    assert "sel" in page.get_attribute("[data-testid=token][data-index='3']", "class")
    assert "focused" in page.get_attribute(graph, "class")
    assert int(page.get_attribute(graph, "data-highlighted")) >= 1
    # click an output position: the graph is rooted there
    top = page.evaluate(
        f"Math.max(...Array.from(document.querySelectorAll('{graph} circle.node')).map(c => Number(c.dataset.row)))"
    )
    page.click(f"{graph} circle.node[data-row='{top}'][data-token='3']")
    _until(page, f"document.querySelector('{graph}').dataset.root === '3'")

    # another layer and head in the heatmap: the canvas changes
    shot = page.evaluate("document.querySelector('[data-testid=heatmap]').toDataURL()")
    page.select_option("[data-testid=layer]", "0")
    _until(page, "document.querySelector('[data-testid=heatmap]').dataset.layer === '0'")
    page.select_option("[data-testid=head]", "5")
    _until(page, "document.querySelector('[data-testid=heatmap]').dataset.head === '5'")
    assert page.evaluate("document.querySelector('[data-testid=heatmap]').toDataURL()") != shot

    # switch methods and explain again: the rows follow the choice
    first_method = rows[0]
    page.uncheck(f"[data-testid=methods] input[value='{first_method}']")
    page.click("[data-testid=explain]")
    _wait_drawn(page, 2)
    rows_again = page.eval_on_selector_all(
        "#x-score-grid .name[data-method]", "nodes => nodes.map(n => n.dataset.method)"
    )
    assert rows_again == rows[1:]

    # blank out a token and compare
    page.click("[data-testid=whatif-token][data-index='3']")
    page.click("[data-testid=whatif-run]")
    page.wait_for_selector("[data-testid=whatif-prediction]", timeout=120_000)
    compared = page.inner_text("[data-testid=whatif-grid]")
    assert "[UNK]" in compared and "before" in compared and "after" in compared

    # export: SVG of the flow graph, PNG of the token scores, the whole result as JSON
    svg = _download(page, "[data-testid=export-svg][data-view=graph]").decode("utf-8")
    assert (
        svg.startswith("<?xml")
        and "<svg" in svg
        and "<line" in svg
        and "onerror=alert" not in svg.replace("onerror=alert(1)&gt;", "")
    )
    png = _download(page, "[data-testid=export-png][data-view=scores]")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(_download(page, "[data-testid=export-json]"))
    assert data["tokens"][0] == "[CLS]" and set(data["methods"]) == set(rows_again)
    report = _download(page, "[data-testid=export-report]").decode("utf-8")
    assert report.startswith("<!DOCTYPE html>")

    # nothing went wrong, and nothing left the machine
    page.evaluate("window.scrollTo(0, 0)")
    screenshot = page.screenshot(full_page=False)
    _not_blank(screenshot)
    folder = request.config.getoption("--screenshots")
    if folder:
        _readme_screenshot(page, Path(folder) / "explore.png")
    assert browser.errors == []
    assert not browser.dialogs
    assert browser.requests and all(u.startswith((url, "data:", "blob:")) for u in browser.requests), browser.requests


def _readme_screenshot(page: Any, path: Path) -> None:
    """The README's picture: a demo tweet with the default methods, one word followed through the flow graph."""
    from attrflow.demo import TWEETS

    page.set_viewport_size({"width": 1280, "height": 1900})
    page.goto(page.url)
    page.wait_for_selector("#explore[data-state=idle]")
    page.fill("[data-testid=text]", TWEETS[0])
    page.click("[data-testid=explain]")
    _wait_drawn(page, 1)
    page.eval_on_selector(
        "[data-testid=threshold]", "el => { el.value = '0.1'; el.dispatchEvent(new Event('input')); }"
    )
    _until(page, "document.querySelector('[data-testid=flow-graph]').dataset.threshold === '0.1'")
    index = TWEETS[0].split().index("amazing") + 1
    page.click(f"[data-testid=token][data-index='{index}']")
    page.evaluate("window.scrollTo(0, 0)")
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(full_page=False)
    try:  # 256 colours: a quarter of the bytes, the same picture for a README
        from PIL import Image

        buffer = io.BytesIO()
        Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
        shot = buffer.getvalue()
    except ImportError:
        pass
    path.write_bytes(shot)


def test_bad_input_shows_an_error_not_a_blank_page(served: Served, browser: Browser):
    page = browser.page
    page.goto(served.url)
    page.wait_for_selector("#explore[data-state=idle]")
    page.fill("[data-testid=text]", " ".join(["good"] * 80))
    page.click("[data-testid=explain]")
    page.wait_for_selector("[data-testid=error]:not([hidden])")
    assert "takes at most 64" in page.inner_text("[data-testid=error]")
    page.check("[data-testid=truncate]")
    page.click("[data-testid=explain]")
    _wait_drawn(page, 1)
    assert "cut to the model's maximum length" in page.inner_text("[data-testid=prediction]")


def _hostile_attribution() -> attrflow.AttentionAttribution:
    tokens = ("[CLS]", "the", "film", XSS, "</script>", "&amp;", '"', "was", "fine", "[SEP]")
    n, L, H = len(tokens), 4, 3
    g = torch.Generator().manual_seed(3)
    return attrflow.AttentionAttribution(
        tokens=tokens,
        attributions=torch.randn(L, H, n, n, generator=g) * 0.01,
        attentions=(torch.randn(L, H, n, n, generator=g) * 2).softmax(-1),
        layers=tuple(range(L)),
        target=1,
        target_label="positive",
        predicted=1,
        probability=0.9,
        baseline_probability=torch.full((L,), 0.5),
        completeness_gap=torch.full((L,), 1e-4),
        special_mask=(True,) + (False,) * (n - 2) + (True,),
        settings={"model": "test <i>model</i>"},
    )


def test_the_inline_view_works_from_a_file_offline(browser: Browser, tmp_path: Path):
    result = _hostile_attribution()
    path = result.explore().write(tmp_path / "inline.html")
    page = browser.page
    browser.requests.clear()
    browser.errors.clear()
    page.goto(path.as_uri())
    _until(page, "document.getElementById('explore').dataset.drawnGeneration === '1'")
    chips = page.eval_on_selector_all("[data-testid=token]", "nodes => nodes.map(n => n.textContent)")
    assert chips == list(result.tokens)  # every hostile token shows as its own text
    assert page.evaluate("document.querySelectorAll('img').length") == 0 and not browser.dialogs
    assert page.is_hidden("[data-testid=explain]") and page.is_visible("#x-inline-note")
    assert int(page.get_attribute("[data-testid=flow-graph]", "data-edges")) >= 1
    assert page.eval_on_selector_all("#x-head-grid td[data-head]", "n => n.length") == 4 * 3
    page.click("#x-head-grid td[data-row='2'][data-head='1']")
    _until(page, "document.querySelector('[data-testid=heatmap]').dataset.head === '1'")
    assert page.get_attribute("[data-testid=heatmap]", "data-layer") == "2"
    assert page.eval_on_selector_all("#x-tree-svg .tree-node", "n => n.length") >= 2
    # the graph's edges are the entries over the threshold, layer by layer (unrooted: every one)
    page.select_option("[data-testid=graph-method]", "r:attention")
    page.click("[data-testid=graph-unroot]")
    page.eval_on_selector(
        "[data-testid=threshold]", "el => { el.value = '0.3'; el.dispatchEvent(new Event('input')); }"
    )
    _until(
        page,
        "document.querySelector('[data-testid=flow-graph]').dataset.threshold === '0.3' && "
        "document.querySelector('[data-testid=flow-graph]').dataset.root === ''",
    )
    mean = result.attentions.double().mean(dim=1)
    relative = mean / mean.flatten(1).amax(dim=1).view(-1, 1, 1)
    assert int(page.get_attribute("[data-testid=flow-graph]", "data-edges")) == int((relative >= 0.3).sum())
    svg = _download(page, "[data-testid=export-svg][data-view=heatmap]").decode("utf-8")
    assert "<svg" in svg and "&lt;/script&gt;" in svg and "&lt;img src=x" in svg and "<img" not in svg
    assert browser.errors == []
    assert all(u.startswith(("file://", "data:", "blob:")) for u in browser.requests), browser.requests


def test_512_tokens_draw_without_one_element_per_cell(browser: Browser, tmp_path: Path):
    n, L, H = 512, 3, 4
    g = torch.Generator().manual_seed(5)
    recorded = attrflow.RecordedAttention(
        tokens=("[CLS]", *(f"w{i}" for i in range(n - 2)), "[SEP]"),
        attentions=(torch.randn(L, H, n, n, generator=g) * 3).softmax(-1),
        predicted=0,
        predicted_label="a",
        probability=0.7,
        special_mask=(True,) + (False,) * (n - 2) + (True,),
    )
    path = recorded.explore().write(tmp_path / "long.html")
    page = browser.page
    browser.errors.clear()
    page.goto(path.as_uri())
    _until(page, "document.getElementById('explore').dataset.drawnGeneration === '1'", timeout=120)
    found = page.evaluate(
        """() => ({elements: document.querySelectorAll('*').length,
                  edges: Number(document.querySelector('[data-testid=flow-graph]').dataset.edges),
                  canvas: document.querySelector('[data-testid=heatmap]').width,
                  chips: document.querySelectorAll('[data-testid=token]').length})"""
    )
    assert found["chips"] == n and 1 <= found["edges"] <= 4000
    assert found["canvas"] >= n  # one canvas holds the 512 x 512 cells
    assert found["elements"] < 20_000  # far from one element per cell (262,144)
    page.eval_on_selector("[data-testid=threshold]", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    _until(page, "document.querySelector('[data-testid=flow-graph]').dataset.threshold === '0'")
    assert int(page.get_attribute("[data-testid=flow-graph]", "data-edges")) <= 4000  # the strongest 4,000 drawn
    assert browser.errors == []
