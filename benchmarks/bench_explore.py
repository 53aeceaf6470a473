"""The explorer in a real browser: time from pressing Explain to a drawn page, and how the page answers at length.

Serves the built-in sentiment model (as shipped, 64 tokens at most) and the same model with its tokenizer opened
to the encoder's 512 positions, drives Debian's headless Chromium with Playwright, and measures inside the page
(``performance.now()``; the page stamps the Explain click and the first frame after everything is drawn):

- Explain → drawn page: a 20-token tweet with AttAttr + rollout + flow (goal: under 1 s on two cores), then 128
  and 512 tokens. Each run is a new text (the server's cache would answer a repeat at once); ``server`` is the
  computation alone, the rest is transfer, decoding and drawing.
- Responsiveness on the drawn page: moving the flow graph's threshold (edges recomputed and redrawn), clicking a
  token (what it reaches highlighted), another heatmap layer, another head (fetched from the server when the
  per-head matrices were not sent), another method for the graph.

    python benchmarks/bench_explore.py                      # 20, 128, 512 tokens (a few minutes under load)
    python benchmarks/bench_explore.py --sizes 20 --repeats 5

The machine is shared: ``uptime`` is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import httpx
import uvicorn
from playwright.sync_api import sync_playwright

import attrflow
from attrflow import zoo
from attrflow.explore import Explorer, allowed_hosts, create_app
from browsers import FLAGS, find_chromium

AFTER_PAINT = "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"
FILLER = (
    "the", "new", "phone", "is", "great", "but", "the", "battery", "dies", "fast", "and", "support", "never",
    "answered", "my", "emails", ",", "so", "i", "am", "not", "sure", "whether", "to", "keep", "it", "or", "send",
    "it", "back", "before", "the", "weekend",
)  # fmt: skip


def serve(models: dict[str, attrflow.Model]) -> tuple[str, Any]:
    explorer = Explorer(models)
    app = create_app(explorer, hosts=allowed_hosts("127.0.0.1"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/", server


def tweets_of(model: attrflow.Model, tokens: int, count: int) -> list[str]:
    """Test tweets that are exactly ``tokens`` tokens long ([CLS] and [SEP] included)."""
    found = []
    for example in attrflow.load_dataset("tweets-sentiment", split="test"):
        text = str(example.text)
        if len(model.tokenize(text, max_length=None).input_ids) == tokens:
            found.append(text)
            if len(found) == count:
                break
    return found


def long_texts(model: attrflow.Model, tokens: int, count: int) -> list[str]:
    """``count`` different texts of exactly ``tokens`` tokens, from the filler words (a new start word each)."""
    texts = []
    for k in range(count):
        words = [FILLER[(k + i) % len(FILLER)] for i in range(tokens)]
        while len(model.tokenize(" ".join(words), max_length=None).input_ids) > tokens:
            words.pop()
        texts.append(" ".join(words))
    return texts


def choose(page: Any, model: str, methods: list[str]) -> None:
    page.select_option("[data-testid=model]", model)
    for box in page.query_selector_all("[data-testid=methods] input[type=checkbox]"):
        if not box.is_disabled():
            box.set_checked(box.get_attribute("value") in methods)


def explain(page: Any, text: str, generation: int) -> dict[str, float]:
    page.fill("[data-testid=text]", text)
    page.click("[data-testid=explain]")
    deadline = time.monotonic() + 900
    while True:
        found = page.evaluate(
            "g => { const r = document.getElementById('explore'); "
            "return Number(r.dataset.drawnGeneration) >= g ? "
            "{drawn: Number(r.dataset.drawnAt) - Number(r.dataset.clickedAt), status: "
            "document.getElementById('x-status').textContent} : null; }",
            generation,
        )
        if found:
            break
        error = page.inner_text("[data-testid=error]")
        if error.strip() or time.monotonic() > deadline:
            raise RuntimeError(f"explain failed: {error}")
        time.sleep(0.02)
    server = float(found["status"].split()[2])  # "done in 0.41 s"
    return {"drawn_ms": found["drawn"], "server_ms": server * 1000}


def timed(page: Any, script: str, arg: Any = None) -> float:
    """Run ``script`` (an async function of one argument, returning once its change is in the DOM) and wait for
    the next painted frame; milliseconds."""
    return float(
        page.evaluate(
            f"async (arg) => {{ const t0 = performance.now(); await ({script})(arg); await ({AFTER_PAINT})(); "
            "return performance.now() - t0; }",
            arg,
        )
    )


UNTIL = "(test) => new Promise(r => { const again = () => test() ? r() : requestAnimationFrame(again); again(); })"
THRESHOLD = (
    "async (v) => { const el = document.querySelector('[data-testid=threshold]'), "
    "svg = document.querySelector('[data-testid=flow-graph]'); el.value = v; el.dispatchEvent(new Event('input')); "
    f"await ({UNTIL})(() => svg.dataset.threshold === v); }}"
)
CLICK_TOKEN = "async (i) => { document.querySelector(`[data-testid=token][data-index='${i}']`).click(); }"
HEATMAP = (
    "async ([id, value, key]) => { const sel = document.querySelector(`[data-testid=${id}]`), "
    "canvas = document.querySelector('[data-testid=heatmap]'); sel.value = value; "
    "sel.dispatchEvent(new Event('change')); "
    f"await ({UNTIL})(() => canvas.dataset[key] === (key === 'layer' ? sel.options[sel.selectedIndex].textContent.slice(6) : value)); }}"
)
SOURCE = (
    "async (v) => { const sel = document.querySelector('[data-testid=graph-method]'), "
    "svg = document.querySelector('[data-testid=flow-graph]'); sel.value = v; sel.dispatchEvent(new Event('change')); "
    f"await ({UNTIL})(() => svg.dataset.source === v); }}"
)


def responsiveness(page: Any, n: int) -> dict[str, float]:
    out: dict[str, list[float]] = {"threshold": [], "token click": [], "heatmap layer": [], "heatmap head": []}
    for value in ("0.05", "0.3", "0.1"):
        out["threshold"].append(timed(page, THRESHOLD, value))
    for i in (1, n // 2, n - 2):
        out["token click"].append(timed(page, CLICK_TOKEN, i))
    for row in ("0", "2", "4"):
        out["heatmap layer"].append(timed(page, HEATMAP, ["layer", row, "layer"]))
    for head in ("3", "7", "mean"):
        out["heatmap head"].append(timed(page, HEATMAP, ["head", head, "head"]))
    sources = page.eval_on_selector_all("[data-testid=graph-method] option", "nodes => nodes.map(n => n.value)")
    out["graph method"] = [timed(page, SOURCE, value) for value in sources[1:] + sources[:1]]
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    sentiment = attrflow.load_model("sentiment")
    model, tokenizer = zoo.load_builtin("sentiment")
    tokenizer.model_max_length = 512  # the encoder has 512 positions; the shipped tokenizer stops at 64
    long = attrflow.load_model(model, tokenizer=tokenizer)
    url, server = serve({"sentiment": sentiment, "sentiment-512": long})
    methods = {20: ["attattr", "rollout", "flow"], 128: ["attattr", "rollout", "flow"], 512: ["rollout", "attention"]}
    results: dict[str, Any] = {"uptime": os.getloadavg(), "sizes": {}}
    executable = find_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS))
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("#explore[data-state=idle]")
        generation = 0
        for n in args.sizes:
            name = "sentiment" if n <= 64 else "sentiment-512"
            chosen = methods.get(n, ["rollout", "attention"])
            texts = tweets_of(sentiment, n, args.repeats) if n <= 64 else long_texts(long, n, args.repeats)
            choose(page, name, chosen)
            runs = []
            for text in texts:
                generation += 1
                runs.append(explain(page, text, generation))
            body = {"text": texts[-1], "model": name, "methods": chosen, "heads": "auto", "encoding": "auto"}
            size = len(httpx.post(url + "api/explain", json=body, timeout=600).content)
            pace = responsiveness(page, n)
            drawn = [r["drawn_ms"] for r in runs]
            compute = [r["server_ms"] for r in runs]
            row = {
                "model": name,
                "methods": chosen,
                "drawn_ms": drawn,
                "server_ms": compute,
                "payload_bytes": size,
                "responsiveness_ms": pace,
            }
            results["sizes"][n] = row
            print(
                f"{n:4d} tokens, {name}, {'+'.join(chosen)}: Explain→drawn median {statistics.median(drawn):.0f} ms "
                f"(runs {', '.join(f'{d:.0f}' for d in drawn)}), of which server {statistics.median(compute):.0f} ms; "
                f"payload {size / 1e6:.2f} MB"
            )
            print("      " + ", ".join(f"{k} {v:.0f} ms" for k, v in pace.items()))
        browser.close()
    server.should_exit = True
    print("console errors:", errors or "none")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
