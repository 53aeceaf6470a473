"""The HTML report in a real headless Chromium, driven over the DevTools protocol (pure Python, no driver).

Chromium is launched with ``--remote-debugging-pipe``: it reads protocol commands from file descriptor 3 and
writes replies to 4, NUL-separated JSON. Locally the tests skip without Chromium; under CI (``CI`` set) a missing
Chromium is a failure, because .ci/run installs it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import io
import json
import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from attrflow.results import AttentionAttribution, RecordedAttention
from attrflow.viz import TokenScores
from browsers import FLAGS, chromium_or_skip

XSS = "<img src=x onerror=alert(1)>"


class Chromium:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, profile: Path) -> None:
        command_read, self._command_write = os.pipe()
        self._reply_read, reply_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol pipes must be fds 3 and 4
            high_read = fcntl.fcntl(command_read, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4 first
            high_write = fcntl.fcntl(reply_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire_pipes,
        )
        os.close(command_read)
        os.close(reply_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close", browser=True, timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._command_write)
        os.close(self._reply_read)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._reply_read], [], [], left)
            if ready:
                chunk = os.read(self._reply_read, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe (exit code {self.process.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False, timeout: float = 20
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser and self.session:
            message["sessionId"] = self.session
        os.write(self._command_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read(deadline))

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"page script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args", []))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found


def long_result() -> AttentionAttribution:
    """40 real-looking word pieces, with hostile tokens among them; 12 layers × 12 heads like BERT-base."""
    words = (
        "[CLS]", "the", "film", "'", "s", "first", "half", "is", "a", "slow", ",", "deliberate", "build", "##up",
        "that", "pays", "off", "beautifully", ";", "the", "cast", "-", "led", "by", "an", "un", "##dera", "##ted",
        "lead", "-", "never", "hits", "a", "false",
    )  # fmt: skip
    tokens = (*words, XSS, "</script>", "&amp;", '"', "tail", "[SEP]")
    n, L, H = len(tokens), 12, 12
    assert n == 40
    g = torch.Generator().manual_seed(7)
    attributions = torch.randn(L, H, n, n, generator=g) * torch.rand(L, H, 1, 1, generator=g) * 0.01
    return AttentionAttribution(
        tokens=tokens,
        attributions=attributions,
        attentions=(torch.randn(L, H, n, n, generator=g) * 2).softmax(-1),
        layers=tuple(range(L)),
        target=1,
        target_label="positive",
        predicted=1,
        probability=0.93,
        baseline_probability=torch.full((L,), 0.5),
        completeness_gap=torch.full((L,), 2e-4),
        input_ids=tuple(range(n)),
        special_mask=(True,) + (False,) * (n - 2) + (True,),
        settings={"model": "bert-base <i>", "rule": "riemann-left", "steps": 64},
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chromium, AttentionAttribution]]:
    executable = chromium_or_skip()
    folder = tmp_path_factory.mktemp("browser")
    result = long_result()
    n = len(result.tokens)
    extra = {
        "rollout": TokenScores.from_values("rollout", torch.linspace(1, 0, n), "rollout, last layer, [CLS] row"),
        "flow": TokenScores.from_values("flow", torch.linspace(0, 1, n), "flow, last layer, [CLS] row"),
    }
    report = folder / "report.html"
    result.to_html(report, token_scores=extra)
    browser = Chromium(executable, folder / "profile")
    try:
        browser.open(report.as_uri())
        yield browser, result
    finally:
        browser.close()


def test_no_console_errors_and_no_network(page):
    browser, _ = page
    browser.evaluate("document.readyState")
    assert browser.errors() == []
    requested = [
        e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested and all(url.startswith("file://") for url in requested)
    assert len(requested) == 1  # the report itself, nothing else


def test_sections_and_token_rows_are_present(page):
    browser, result = page
    found = browser.evaluate(
        """(() => ({
            sections: Array.from(document.querySelectorAll("section")).map(s => s.id),
            rows: Array.from(document.querySelectorAll(".score-row")).map(r => r.dataset.method),
            tokens: document.querySelectorAll("#token-scores .score-row:first-of-type .tok").length,
            grid: document.querySelectorAll("#head-scores td[data-head]").length,
            treeNodes: document.querySelectorAll("#tree g.attrflow-node").length,
            layers: document.getElementById("hm-layer").options.length,
            heads: document.getElementById("hm-head").options.length,
        }))()"""
    )
    assert found["sections"] == ["input", "token-scores", "head-scores", "heatmaps", "tree", "settings"]
    assert found["rows"] == ["attribution", "rollout", "flow", "raw attention"]
    assert found["tokens"] == len(result.tokens)
    assert found["grid"] == 12 * 12
    assert found["treeNodes"] >= 2
    assert found["layers"] == 12 and found["heads"] == 13  # mean + 12 heads


def test_hostile_tokens_are_text_and_did_not_run(page):
    browser, _ = page
    found = browser.evaluate(
        """(() => ({
            images: document.querySelectorAll("img").length,
            inputText: document.getElementById("input").textContent,
            title: document.title,
            tokens: JSON.parse(document.getElementById("attrflow-data").textContent).tokens,
        }))()"""
    )
    assert found["images"] == 0
    assert "<img src=x onerror=alert(1)>" in found["inputText"]
    assert "</script>" in found["inputText"] and "&amp;" in found["inputText"]
    assert found["title"] == "attrflow report: bert-base <i>"
    assert XSS in found["tokens"] and "</script>" in found["tokens"]
    assert not any(e.get("method") == "Page.javascriptDialogOpening" for e in browser.events)


def test_choosing_another_layer_or_head_changes_the_heatmap(page):
    browser, _ = page
    found = browser.evaluate(
        """(() => {
            const canvas = document.getElementById("hm-canvas");
            const pick = (id, value) => {
                const select = document.getElementById(id);
                select.value = value;
                select.dispatchEvent(new Event("change"));
            };
            const shots = [canvas.toDataURL()];
            pick("hm-layer", "3"); shots.push(canvas.toDataURL());
            pick("hm-head", "5"); shots.push(canvas.toDataURL());
            const state = {layer: canvas.dataset.layer, head: canvas.dataset.head, kind: canvas.dataset.kind,
                           caption: document.getElementById("hm-caption").textContent};
            pick("hm-kind", "attention"); shots.push(canvas.toDataURL());
            const attention = {layer: canvas.dataset.layer, kind: canvas.dataset.kind};
            document.querySelector('#head-scores td[data-layer="7"][data-head="2"]').click();
            shots.push(canvas.toDataURL());
            const clicked = {layer: canvas.dataset.layer, head: canvas.dataset.head, kind: canvas.dataset.kind};
            pick("hm-layer", "3"); pick("hm-head", "5"); pick("hm-kind", "attribution");
            return {distinct: new Set(shots).size, count: shots.length, state, attention, clicked};
        })()"""
    )
    assert found["distinct"] == found["count"] == 5
    assert found["state"]["layer"] == "3" and found["state"]["head"] == "5"
    assert found["state"]["kind"] == "attribution"
    assert "layer 3, head 5" in found["state"]["caption"]
    assert found["attention"] == {"layer": "3", "kind": "attention"}  # the layer is kept across kinds
    assert found["clicked"] == {"layer": "7", "head": "2", "kind": "attribution"}


def test_heatmap_pixels_match_the_data(page):
    browser, result = page
    browser.evaluate(
        """(() => {
            for (const [id, value] of [["hm-kind", "attribution"], ["hm-layer", "3"], ["hm-head", "5"]]) {
                const select = document.getElementById(id);
                select.value = value;
                select.dispatchEvent(new Event("change"));
            }
        })()"""
    )
    matrix = result.attributions[3, 5]
    n = matrix.shape[0]
    flat = int(matrix.abs().argmax())
    q, k = divmod(flat, n)
    zero = int(matrix.abs().argmin())
    q0, k0 = divmod(zero, n)
    pixels = browser.evaluate(
        f"""(() => {{
            const canvas = document.getElementById("hm-canvas");
            const cell = Number(canvas.dataset.cell), margin = Number(canvas.dataset.margin);
            const context = canvas.getContext("2d");
            const at = (q, k) => Array.from(context.getImageData(margin + k * cell + cell / 2,
                                                                 margin + q * cell + cell / 2, 1, 1).data);
            return {{strongest: at({q}, {k}), weakest: at({q0}, {k0})}};
        }})()"""
    )
    expected = (214, 39, 40) if float(matrix[q, k]) > 0 else (31, 119, 180)
    assert pixels["strongest"][:3] == pytest.approx(expected, abs=2)
    assert min(pixels["weakest"][:3]) > 245  # |value| near zero is near white


def test_screenshot_is_not_blank(page):
    PIL = pytest.importorskip("PIL.Image")
    browser, _ = page
    box = browser.evaluate(
        """(() => { const r = document.getElementById("hm-canvas").getBoundingClientRect();
                    return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; })()"""
    )
    shot = browser.call(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {**box, "scale": 1}}
    )
    image = PIL.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    assert image.size[0] >= 300 and image.size[1] >= 300
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 50
    reds = sum(count for count, (r, g, b) in colours if r > g + 60)
    blues = sum(count for count, (r, g, b) in colours if b > r + 60)
    assert reds > 1000 and blues > 1000  # a signed heatmap, not an empty canvas
    full = browser.call("Page.captureScreenshot", {"format": "png"})
    page_image = PIL.open(io.BytesIO(base64.b64decode(full["data"]))).convert("L")
    assert page_image.getextrema()[0] < 100  # some dark text on the page


def test_mean_only_report_works(tmp_path):
    executable = chromium_or_skip()
    report = tmp_path / "mean.html"
    long_result().to_html(report, heatmap_heads="mean")
    browser = Chromium(executable, tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        found = browser.evaluate(
            """(() => {
                const canvas = document.getElementById("hm-canvas");
                const head = document.getElementById("hm-head");
                const before = canvas.toDataURL();
                const layer = document.getElementById("hm-layer");
                layer.value = "2";
                layer.dispatchEvent(new Event("change"));
                document.querySelector('#head-scores td[data-layer="5"][data-head="4"]').click();
                return {options: head.options.length, disabled: head.disabled, changed: before !== canvas.toDataURL(),
                        layer: canvas.dataset.layer, head: canvas.dataset.head};
            })()"""
        )
        assert browser.errors() == []
    finally:
        browser.close()
    assert found == {"options": 1, "disabled": True, "changed": True, "layer": "5", "head": "mean"}


def test_recorded_attention_page_works(tmp_path):
    executable = chromium_or_skip()
    result = long_result()
    recorded = RecordedAttention(
        tokens=result.tokens,
        attentions=result.attentions,
        predicted=1,
        predicted_label="positive",
        probability=0.93,
        special_mask=result.special_mask,
    )
    report = tmp_path / "recorded.html"
    recorded.to_html(report)
    browser = Chromium(executable, tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        found = browser.evaluate(
            """(() => {
                const canvas = document.getElementById("hm-canvas");
                const kinds = Array.from(document.getElementById("hm-kind").options).map(o => o.value);
                const before = canvas.toDataURL();
                const head = document.getElementById("hm-head");
                head.value = "3";
                head.dispatchEvent(new Event("change"));
                return {kinds, changed: before !== canvas.toDataURL(), head: canvas.dataset.head,
                        images: document.querySelectorAll("img").length};
            })()"""
        )
        assert browser.errors() == []
    finally:
        browser.close()
    assert found == {"kinds": ["attention"], "changed": True, "head": "3", "images": 0}


def test_the_heatmap_opens_on_a_layer_with_more_than_one_row(tmp_path):
    """The top layer of a [CLS] classifier's attribution holds the [CLS] row only (nothing else reaches the output):
    the heatmap opens on the highest layer where more rows carry something, and says why when it shows one row."""
    executable = chromium_or_skip()
    result = long_result()
    attributions = result.attributions.clone()
    attributions[-1, :, 1:, :] = 0.0  # layer 11: only the [CLS] query row
    attributions[-2, :, 2:, :] = 0.0  # layer 10: [CLS] and one more row
    one_row = dataclasses.replace(result, attributions=attributions)
    report = tmp_path / "report.html"
    one_row.to_html(report)
    browser = Chromium(executable, tmp_path / "profile")
    try:
        browser.open(report.as_uri())
        found = browser.evaluate(
            """(() => {
                const canvas = document.getElementById("hm-canvas");
                const first = {kind: canvas.dataset.kind, layer: canvas.dataset.layer,
                               caption: document.getElementById("hm-caption").textContent};
                const layer = document.getElementById("hm-layer");
                layer.value = String(layer.options.length - 1);
                layer.dispatchEvent(new Event("change"));
                return {first: first, top: {layer: canvas.dataset.layer,
                        caption: document.getElementById("hm-caption").textContent}};
            })()"""
        )
        assert browser.errors() == []
    finally:
        browser.close()
    assert found["first"]["kind"] == "attribution" and found["first"]["layer"] == "10"
    assert "Only the row" not in found["first"]["caption"]
    assert found["top"]["layer"] == "11"
    assert (
        "Only the row of \u201c[CLS]\u201d is non-zero: the prediction reads this position" in found["top"]["caption"]
    )
