"""``attrflow explore`` as a process: it prints the URL, answers over real HTTP on 127.0.0.1 only for its own host
name, and stops cleanly (exit 0) on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from attrflow.testing import build, word_tokenizer

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    build("bert", init_scale=0.2).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str], str | None]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "attrflow", "explore", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = re.search(r"serving on (http://\S+)", line)
            if match:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(120)
    return process, lines, found[0] if found else None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_it_serves_on_loopback_and_stops_cleanly(checkpoint: Path, sig: signal.Signals):
    process, lines, url = _start("--model", str(checkpoint), "--port", "0")
    try:
        assert url is not None, "".join(lines)
        assert url.startswith("http://127.0.0.1:")
        models = httpx.get(url + "api/models", timeout=30).json()
        assert [m["name"] for m in models] == [str(checkpoint)]
        answer = httpx.post(
            url + "api/explain", json={"text": "the movie was good", "methods": ["rollout"]}, timeout=60
        ).json()
        assert answer["tokens"] == ["[CLS]", "the", "movie", "was", "good", "[SEP]"]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        refused = httpx.get(url + "api/models", headers={"host": f"attacker.example:{port}"}, timeout=30)
        assert refused.status_code == 400
        process.send_signal(sig)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"stopped ({sig.name})" in "".join(lines)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "api/models", timeout=5)


def test_a_busy_port_is_an_error_naming_it(checkpoint: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        process, lines, url = _start("--model", str(checkpoint), "--port", str(port))
        code = process.wait(60)
    assert url is None and code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in "".join(lines)


def test_an_unknown_model_is_an_error_before_anything_is_served():
    process, lines, url = _start("--model", "no-such-model", "--port", "0")
    assert process.wait(60) == 1 and url is None
    assert "no model directory 'no-such-model'" in "".join(lines)
