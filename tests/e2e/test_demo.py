"""The demo, end to end on the built-in models with its samples made small: every page on the one skeleton, linked
from the index and back to it, the faithfulness page with AttAttr, no path of this machine in any page."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

import attrflow.analysis.faithfulness as faithfulness_module
import attrflow.analysis.heads as heads_module
import attrflow.analysis.triggers as triggers_module
from attrflow.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    # the same pages on samples small enough for a test (the demo's own sizes take minutes)
    faithfulness = faithfulness_module.faithfulness
    heads_demo = heads_module.heads_demo
    trigger_attack = triggers_module.trigger_attack
    patch.setattr(
        faithfulness_module, "faithfulness", lambda *a, **k: faithfulness(*a, **{**k, "examples": 3, "steps": 2})
    )
    patch.setattr(
        heads_module, "heads_demo", lambda *a, **k: heads_demo(*a, **{**k, "examples": 2, "eval_examples": 12})
    )
    patch.setattr(
        triggers_module,
        "trigger_attack",
        lambda *a, **k: trigger_attack(*a, **{**k, "mine_examples": 4, "eval_examples": 12, "control_seeds": 1}),
    )
    try:
        lines: list[str] = []
        entries = run_demo(out, say=lines.append)
    finally:
        patch.undo()
    return out, entries


def _pages(out: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(out.glob("*.html"))}


def test_every_page_is_linked_from_the_index_and_back(demo) -> None:
    out, entries = demo
    pages = _pages(out)
    assert set(pages) == {"index.html", *(entry.path.name for entry in entries)}
    index = pages.pop("index.html")
    for name, page in pages.items():
        assert f"href='{name}'" in index or f'href="{name}"' in index, name
        assert 'href="index.html"' in page, f"{name} does not link back to the index"
        assert page.count("<style>") == 1 and "<footer>" in page, f"{name} is not on the page skeleton"


def test_the_faithfulness_page_includes_attattr(demo) -> None:
    out, _ = demo
    page = (out / "faithfulness.html").read_text()
    assert "attattr" in page


def test_no_page_holds_a_path_of_this_machine(demo) -> None:
    out, _ = demo
    temporary = tempfile.gettempdir()
    for name, page in _pages(out).items():
        assert temporary not in page and str(out) not in page, name
        assert not re.search(r"attrflow-(heads|faithfulness)-\w+", page), name


def test_numbers_do_not_wrap_in_table_cells(demo) -> None:
    out, _ = demo
    for name, page in _pages(out).items():
        assert re.search(r"table\.num td, table\.num th \{ white-space: nowrap; \}", page), name
