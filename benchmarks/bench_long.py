"""Long inputs: time and peak memory of recording attention, row rollout and flow, on random-weight models of real
shapes (built offline from configs; nothing is downloaded).

Every configuration runs in its own child process, so that peak memory figures do not pollute each other: the
child builds the model, resets its peak resident set (``/proc/self/clear_refs``), runs the one computation and
reports ``VmHWM − VmRSS before`` — the peak memory above the loaded model. Times are wall-clock of that one call.

    PYTHONPATH=src python benchmarks/bench_long.py                      # every shape, n = 512 .. 4096
    PYTHONPATH=src python benchmarks/bench_long.py --shapes qwen2-0.5b --sizes 512 4096 --what rows record

What each row measures (the issue's letters):

* ``forward``: the model's own forward pass (SDPA, logits at the last position only) — the floor.
* ``record`` (a): ``Model.record``, every layer's ``[H, n, n]`` attention kept.
* ``rows`` (b): ``token_scores(model, ids, "rollout")`` for the last position from attention rows
  (``Model.capture_keys`` + ``flow.rows``); forced onto the row path at every n.
* ``rollout-recorded``: the same scores through the recorded attention (the path below the threshold).
* ``flow`` (d): exact attention flow of the last position at the last layer (``layers=-1``), recorded attention.
* ``flow-bounds``: certified bounds on flow at every layer from attention rows (``flow_bounds``).
* ``attattr`` (c): AttAttr token scores of the last position, ``attribute(model, ids, keep="tokens")`` (streaming
  branching passes, gradients reduced as they come), over ``--attattr-layers`` (default: layer 0 alone, the
  deepest branch point and so the largest pass: the peak of a run over every layer; the time of every layer is
  ``attattr_all_layers_s``, extrapolated from the rows run by the count of layer-rows).
* ``attattr-full``: the same with ``keep="full"``, the ``[L, H, n, n]`` tensors (its estimate from the counts is
  :func:`attrflow.methods.attribution.full_memory`).

Materialised computations whose estimated peak exceeds ``--max-gb`` are not run; the table gives their size
computed from the counts instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    # Qwen2-0.5B: 24 layers, 14 heads, 2 key/value heads, hidden 896, vocabulary 151936
    "qwen2-0.5b": {
        "kind": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    # GPT-2 small (position table widened from 1024 to 4096 so that the long inputs fit)
    "gpt2-small": {
        "kind": "gpt2",
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "vocab_size": 50257,
        "n_positions": 4096,
    },
    # the 8-layer Llama-shaped model
    "llama-8l": {
        "kind": "llama",
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 32000,
        "max_position_embeddings": 8192,
    },
}
WHAT = ("forward", "record", "rows", "rollout-recorded", "flow", "flow-bounds", "attattr", "attattr-full")
MATERIALISED = ("record", "rollout-recorded", "flow", "attattr-full")


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes."""
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def _build(shape: str) -> Any:
    import torch
    import transformers as T

    config = dict(SHAPES[shape])
    kind = config.pop("kind")
    torch.manual_seed(0)
    if kind == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(**config)).eval()
    if kind == "qwen2":
        return T.Qwen2ForCausalLM(T.Qwen2Config(**config)).eval()
    return T.LlamaForCausalLM(T.LlamaConfig(**config)).eval()


def counts(shape: str) -> dict[str, int]:
    """Layers, heads, key/value heads and head width of a shape."""
    config = SHAPES[shape]
    if config["kind"] == "gpt2":
        return {
            "L": config["n_layer"],
            "H": config["n_head"],
            "Hkv": config["n_head"],
            "d": config["n_embd"] // config["n_head"],
        }
    heads = config["num_attention_heads"]
    return {
        "L": config["num_hidden_layers"],
        "H": heads,
        "Hkv": config["num_key_value_heads"],
        "d": config["hidden_size"] // heads,
    }


def materialised_estimate(shape: str, n: int, what: str) -> int:
    """Peak bytes above the model a materialised computation needs, by the counts (float32).

    ``record``: the per-layer records, their real-position copies and the stacked result, ``3·L·H·n²·4``, plus the
    logits at every position, ``n·V·4``. ``rollout-recorded`` and ``flow``: the recording kept (``L·H·n²·4``) plus
    the matrices the methods return (a float32 and a float64 copy of the chosen layers, ``L·H·n²·12``) and the
    float64 graph and rollout ``[L, n, n]`` (``2·L·n²·8``), or the recording's peak if larger.
    """
    c = counts(shape)
    if what == "attattr-full":
        return attattr_full_estimate(shape, n)
    attention = c["L"] * c["H"] * n * n * 4
    recording = 3 * attention + n * int(SHAPES[shape]["vocab_size"]) * 4
    if what == "record":
        return recording
    return max(recording, 4 * attention + 2 * c["L"] * n * n * 8)


def _widths(shape: str) -> tuple[int, int, int]:
    """Hidden and MLP widths and the vocabulary of a shape."""
    config = SHAPES[shape]
    hidden = int(config.get("hidden_size", config.get("n_embd", 0)))
    return hidden, int(config.get("intermediate_size", 4 * hidden)), int(config["vocab_size"])


def attattr_full_estimate(shape: str, n: int, steps: int = 4) -> int:
    """Peak bytes of ``attribute(..., keep="full")`` over every layer by the counts (float32; the formula of
    :func:`attrflow.methods.attribution.full_memory`): the recorded and in-graph attention 2·L·e·4, the float64
    gradients at each of the m points and the attributions (8m + 12)·L·e, the result's attention 4·L·e, one
    pass of two rows 2·L·(24·e + 64·n·d), with e = H·n²."""
    c = counts(shape)
    hidden, _, _ = _widths(shape)
    entries = c["H"] * n * n
    return c["L"] * entries * (12 + 8 * steps + 12) + 2 * c["L"] * (24 * entries + 64 * n * hidden)


def attattr_kept_estimate(shape: str, n: int, rows: int = 1) -> int:
    """Peak bytes of one streaming pass branching at layer 0 by the counts (the formula of
    :func:`attrflow.methods._kept.kept_pass_memory`, float32): per row the checkpointed blocks' 5·L·n·d·4 and two
    blocks' activations 2·n·(8d + 6f)·4, the branched site's 16·e, the logits 12·V; the interpolation rows'
    gradients and products 8·e each, the clean probabilities 4·e."""
    c = counts(shape)
    hidden, inner, vocab = _widths(shape)
    entries = c["H"] * n * n
    per_row = (c["L"] * 5 * hidden + 2 * (8 * hidden + 6 * inner)) * n * 4 + entries * 16 + 12 * vocab
    return (1 + rows) * per_row + rows * entries * 8 + entries * 4


def _attattr(model: Any, encoding: Any, what: str, layers: list[int], steps: int) -> dict[str, Any]:
    """Run (c) and say what it computed: the passes, rows, completeness gap and peak memory of the result."""
    import attrflow

    keep = "tokens" if what == "attattr" else "full"
    result = attrflow.attribute(model, encoding, steps=steps, layers=layers, keep=keep)
    rows = int(result.settings.get("rows", 0))
    layer_rows = sum(model.num_layers - layer for layer in layers)
    every = sum(model.num_layers - layer for layer in range(model.num_layers))
    return {
        "layers": layers,
        "steps": steps,
        "passes": result.settings.get("passes"),
        "rows": rows,
        "max_gap": float(result.completeness_gap.abs().max()),
        "peak_memory_reported_mb": result.settings["peak_memory"] / 2**20,
        "largest_pass_estimate_mb": result.settings.get("largest_pass_estimate", 0) / 2**20,
        # each row crosses the layers above its branch point: time scales with the layer-rows
        "layer_rows_scale": every / layer_rows,
    }


def child(shape: str, n: int, what: str, threads: int) -> dict[str, Any]:
    """Run one configuration in this process and report its time and peak memory above the loaded model."""
    import torch

    torch.set_num_threads(threads)
    import attrflow
    import attrflow.methods.context as context_module

    network = _build(shape)
    model = attrflow.load_model(network)
    generator = torch.Generator().manual_seed(n)
    ids = torch.randint(10, int(network.config.vocab_size), (1, n), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    encoding = model.prepare(inputs)
    context_module.MATERIALISE_LIMIT_BYTES = 0 if what in ("rows", "flow-bounds") else 2**62
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    with torch.no_grad():
        if what == "forward":
            network(**inputs, logits_to_keep=1)
        elif what == "record":
            model.record(encoding)
        elif what == "rows":
            result = attrflow.token_scores(model, encoding, "rollout")
            extra["sink_share"] = result.diagnostics["sink_share"]
        elif what == "rollout-recorded":
            attrflow.token_scores(model, encoding, "rollout")
        elif what == "flow":
            try:
                attrflow.token_scores(model, encoding, "flow", layers=-1)
            except attrflow.InvalidInputError as exc:
                extra["refused"] = str(exc)
        elif what in ("attattr", "attattr-full"):
            chosen = os.environ.get("BENCH_ATTATTR_LAYERS", "0")
            # the materialised path is what explaining the whole model needs: every layer
            layers = list(range(model.num_layers)) if what == "attattr-full" else [int(x) for x in chosen.split(",")]
            steps = int(os.environ.get("BENCH_ATTATTR_STEPS", "4"))
            with torch.enable_grad():
                extra.update(_attattr(model, encoding, what, layers, steps))
        else:
            result = attrflow.token_scores(model, encoding, "flow_bounds")
            extra["max_bound_width"] = result.diagnostics["max_bound_width"]
            extra["mean_bound_width"] = float((result.bounds[1] - result.bounds[0])[-1].mean())
    seconds = time.perf_counter() - start
    peak = _status("VmHWM") - before
    if "layer_rows_scale" in extra:
        extra["attattr_all_layers_s"] = seconds * extra.pop("layer_rows_scale")
    return {
        "shape": shape,
        "n": n,
        "what": what,
        "seconds": seconds,
        "peak_mb": peak / 2**20,
        "model_mb": before / 2**20,
        **extra,
    }


def run(shape: str, n: int, what: str, threads: int, timeout: float) -> dict[str, Any]:
    """One configuration in a fresh child process."""
    command = [sys.executable, __file__, "--child", shape, str(n), what, "--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"shape": shape, "n": n, "what": what, "error": f"stopped after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"shape": shape, "n": n, "what": what, "error": tail[0][:200]}
    return dict(json.loads(lines[-1]))


def _cell(result: dict[str, Any], estimate: int | None) -> str:
    computed = "" if estimate is None else f" (counts: {estimate / 2**20:,.0f} MB)"
    if "skipped" in result:
        return f"not run; needs {estimate / 2**30:,.1f} GB by the counts" if estimate else "not run"
    if "error" in result:
        return f"failed: {result['error']}"
    if "refused" in result:
        found = re.search(r"estimated ([^,]+?) on one core", result["refused"])
        return f"refused in {result['seconds']:.1f} s (estimated {found.group(1) if found else '?'})"
    if result["what"] == "attattr":
        return (
            f"{result['seconds']:.0f} s (every layer ≈ {result['attattr_all_layers_s'] / 60:,.0f} min), "
            f"{result['peak_mb']:,.0f} MB (counts: {result['largest_pass_estimate_mb']:,.0f} MB for "
            f"{result['rows']} rows in {result['passes']} passes), gap {result['max_gap']:.0e}"
        )
    return f"{result['seconds']:.1f} s, {result['peak_mb']:,.0f} MB{computed}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048, 4096])
    parser.add_argument("--what", nargs="+", default=list(WHAT), choices=WHAT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child (default 1)")
    parser.add_argument("--max-gb", type=float, default=3.0, help="run materialised computations up to this estimate")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument(
        "--attattr-layers", default="0", help="layers of (c), comma-separated (default 0: the largest pass)"
    )
    parser.add_argument("--steps", type=int, default=4, help="quadrature points of (c) (Gauss-Lobatto)")
    parser.add_argument("--child", nargs=3, metavar=("SHAPE", "N", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shape, n, what = args.child
        print(json.dumps(child(shape, int(n), what, args.threads)))
        return
    # (c)'s options reach the children through the environment (their command line is the shared one)
    os.environ["BENCH_ATTATTR_LAYERS"] = args.attattr_layers
    os.environ["BENCH_ATTATTR_STEPS"] = str(args.steps)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
    results = []
    for shape in args.shapes:
        print(f"\n{shape} {counts(shape)}  ({args.threads} torch thread(s); time, peak memory above the model)")
        print("| n | " + " | ".join(args.what) + " |")
        print("|---|" + "---|" * len(args.what), flush=True)
        for n in args.sizes:
            cells = []
            for what in args.what:
                estimate = materialised_estimate(shape, n, what) if what in MATERIALISED else None
                if estimate is not None and estimate > args.max_gb * 2**30:
                    result: dict[str, Any] = {"shape": shape, "n": n, "what": what, "skipped": True}
                else:
                    result = run(shape, n, what, args.threads, args.timeout)
                result["estimate_mb"] = None if estimate is None else estimate / 2**20
                results.append(result)
                cells.append(_cell(result, estimate))
            print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        from attrflow.storage import atomic_write_json

        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
