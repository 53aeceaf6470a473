"""The explorer's JSON API through Starlette's ASGI test client, on tiny models: every endpoint, the bad requests,
the security rules, progress and cancellation, one forward at a time per model, and equality with attrflow.explain.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

import attrflow
from attrflow.explore import Explorer, JobCancelledError, allowed_hosts, decode_array, parse_explain_request
from attrflow.methods.context import ExplainContext
from attrflow.methods.registry import Method, method_names, register_method, unregister_method
from attrflow.testing import build, word_tokenizer

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient

from attrflow.explore import create_app

TEXT = "the movie was not very good"
BASE = "http://127.0.0.1:8765"
FAST = {"attattr": {"steps": 2}}


@pytest.fixture(scope="module")
def models():
    return {
        "bert": attrflow.load_model(build("bert", init_scale=0.2), tokenizer=word_tokenizer()),
        "gpt2": attrflow.load_model(build("gpt2", init_scale=0.2), tokenizer=word_tokenizer()),
    }


@pytest.fixture(scope="module")
def explorer(models):
    explorer = Explorer(models)
    yield explorer
    explorer.close()


@pytest.fixture(scope="module")
def client(explorer):
    app = create_app(explorer, hosts=allowed_hosts("127.0.0.1"), max_chars=2000)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        yield client


def _explain(client, **body):
    response = client.post("/api/explain", json={"model": "bert", "options": FAST, **body})
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------------------------- descriptions
def test_models_lists_each_model_with_labels_and_the_methods_that_can_explain_it(client, models):
    found = {m["name"]: m for m in client.get("/api/models").json()}
    assert set(found) == {"bert", "gpt2"}
    bert, gpt2 = found["bert"], found["gpt2"]
    assert bert["task"] == "sequence-classification" and bert["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert (bert["layers"], bert["heads"], bert["max_length"]) == (3, 4, 32)
    assert gpt2["task"] == "causal-lm" and gpt2["labels"] is None and gpt2["causal"]
    assert set(bert["methods"]) | set(bert["unsupported"]) == set(method_names())


def test_methods_is_the_registry_with_the_defaults_of_explain(client):
    methods = client.get("/api/methods").json()
    assert [m["name"] for m in methods] == list(method_names())
    defaults = {m["name"] for m in methods if m["default"]}
    assert defaults == set(attrflow.explain.__globals__["default_methods"]())
    assert all({"description", "paper", "produces", "cost", "options", "kind"} <= set(m) for m in methods)


# ---------------------------------------------------------------------------------------------- equality
def _without(settings: dict, keys: set) -> dict:
    return {key: value for key, value in settings.items() if key not in keys}


def test_explain_answers_exactly_what_attrflow_explain_computes(client, models):
    # every registered method that can explain the model, whoever registered it
    methods = next(m for m in client.get("/api/models").json() if m["name"] == "bert")["methods"]
    assert {"attattr", "rollout", "flow", "blankout"} <= set(methods)
    expected = attrflow.explain(models["bert"], TEXT, methods=methods, options=FAST).to_dict()
    listed = _explain(client, text=TEXT, methods=methods, encoding="lists")
    for key, value in expected.items():
        if key == "methods":
            continue
        assert listed[key] == value, key
    assert list(listed["methods"]) == methods
    measured = {"peak_memory", "peak_memory_source"}  # how much memory a run took is not part of the result
    for name, entry in expected["methods"].items():
        got = listed["methods"][name]
        for key, value in entry.items():
            if key == "settings":
                got, value = {**got, key: _without(got[key], measured)}, _without(value, measured)
            assert got[key] == value, (name, key)
        assert ("matrices" in entry) == (got["matrices"] is not None)
    compact = _explain(client, text=TEXT, methods=methods, encoding="exact")
    for name, entry in expected["methods"].items():
        assert compact["methods"][name]["overall"] == entry["overall"]
        if "matrices" in entry:  # exact base64 is exact (float32 or float64 as computed)
            assert np.array_equal(decode_array(compact["methods"][name]["matrices"]), np.asarray(entry["matrices"]))


def test_explain_sends_the_attention_and_attribution_per_head_or_as_means(client, models):
    expected = attrflow.explain(models["bert"], TEXT, methods=["attattr"], options=FAST).result
    per_head = _explain(client, text=TEXT, methods=["attattr"], heads=True)
    assert per_head["per_head"] is True and per_head["matrices"]["attention"]["heads"] == 4
    assert np.array_equal(decode_array(per_head["matrices"]["attention"]["data"]), expected.attentions.numpy())
    assert np.array_equal(decode_array(per_head["matrices"]["attribution"]["data"]), expected.attributions.numpy())
    means = _explain(client, text=TEXT, methods=["attattr"], heads=False, encoding="float16")
    attention = decode_array(means["matrices"]["attention"]["data"])
    assert attention.shape == (3, 1, 8, 8)
    assert np.allclose(attention[:, 0], expected.attentions.mean(dim=1).numpy(), atol=1e-3)
    assert means["head_scores"]["values"] == expected.head_scores().tolist()
    assert means["tree"]["root"]["token"] == 0 and means["completeness_gap"] == expected.completeness_gap.tolist()


def test_blanking_out_a_token_explains_the_input_with_unk_there(client, models):
    found = _explain(client, text=TEXT, methods=["rollout"], blank=[2])
    assert found["tokens"][2] == "[UNK]" and found["blank"] == [2]
    ids = torch.tensor([[2, 5, 1, 9, 15, 16, 13, 3]])  # [CLS] the [UNK] was not very good [SEP]
    expected = attrflow.explain(
        models["bert"], {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, methods=["rollout"]
    )
    assert found["methods"]["rollout"]["overall"] == expected.to_dict()["methods"]["rollout"]["overall"]
    plain = _explain(client, text=TEXT, methods=["rollout"])
    assert plain["methods"]["rollout"]["overall"] != found["methods"]["rollout"]["overall"]


def test_targets_are_class_indices_labels_or_for_causal_lms_one_next_token(client, models):
    assert _explain(client, text=TEXT, methods=["attattr"], target=2)["target"] == 2
    assert _explain(client, text=TEXT, methods=["attattr"], target="LABEL_0")["target"] == 0
    lm = _explain(client, text="the movie was", model="gpt2", methods=["attattr"], target="good")
    assert lm["target"] == word_tokenizer().convert_tokens_to_ids("good")
    assert lm["target_label"] == "good" and lm["outputs"][0]["label"] is not None
    expected = attrflow.explain(models["gpt2"], "the movie was", methods=["attattr"], target=lm["target"], options=FAST)
    assert lm["methods"]["attattr"]["overall"] == expected.to_dict()["methods"]["attattr"]["overall"]


# ---------------------------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"text": TEXT, "model": "nope"}, 422, "unknown model 'nope'; this explorer serves bert, gpt2"),
        ({"text": TEXT, "methods": ["saliency"]}, 422, "unknown method 'saliency'"),
        ({"text": ""}, 422, "text is empty"),
        ({"text": " ".join(["good"] * 40)}, 422, "the input is 42 tokens; model 'bert' takes at most 32"),
        ({"text": ["a"]}, 400, "text must be a string"),
        ({"text": TEXT, "target": 7}, 422, "target must be a class index in [0, 3)"),
        ({"text": TEXT, "target": "LABEL_9"}, 422, "target 'LABEL_9' is not a class of this model"),
        ({"text": "the movie", "model": "gpt2", "target": "very good"}, 422, "is 2 tokens"),
        ({"text": TEXT, "blank": [0]}, 422, "position 0 is a special token"),
        ({"text": TEXT, "blank": [99]}, 422, "position 99 is out of range"),
        ({"text": TEXT, "options": {"rollout": {"head_fusion": "median"}}}, 422, "method 'rollout'"),
        ({"text": TEXT, "options": {"rollout": {"steps": 3}}}, 422, "has no option 'steps'"),
        ({"text": "x" * 2001}, 413, "at most 2000"),
    ],
)
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(client, body, status, words):
    response = client.post("/api/explain", json={"model": "bert", **body})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    assert "Traceback" not in response.text


def test_a_long_text_is_cut_when_truncation_is_asked_for(client):
    found = _explain(client, text=" ".join(["good"] * 40), methods=["rollout"], truncation=True)
    assert found["truncated"] is True and len(found["tokens"]) == 32


def test_malformed_bodies_are_refused(client):
    def post(content: bytes, content_type: str = "application/json"):
        return client.post("/api/explain", content=content, headers={"content-type": content_type})

    assert post(b'{"text": ').status_code == 400
    assert "not valid JSON" in post(b'{"text": ').json()["error"]
    assert post(b'{"text": "x"}', "text/plain").status_code == 415
    assert post(b'{"text": "' + b"x" * 20_000 + b'"}').status_code == 413
    assert client.get("/api/explain").status_code == 405
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "error" in missing.json()


def test_a_method_that_fails_unexpectedly_is_a_500_without_a_stack_trace(client):
    @register_method
    class Broken(Method):
        name = "test-broken"
        description = "raises"

        def compute(self, context: ExplainContext) -> attrflow.TokenScores:
            raise RuntimeError("secret internals at /home/user/model.py line 3")

    try:
        response = client.post("/api/explain", json={"text": TEXT, "model": "bert", "methods": ["test-broken"]})
    finally:
        unregister_method("test-broken")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (RuntimeError); see the server's log"}


# ---------------------------------------------------------------------------------------------- security
def test_other_hosts_and_cross_origin_writes_are_refused(client):
    rebound = client.get("/api/models", headers={"host": "attacker.example:8765"})
    assert rebound.status_code == 400 and "attacker.example" in rebound.json()["error"]
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    cross = client.post("/api/explain", json={"text": TEXT}, headers={"origin": "http://attacker.example"})
    assert cross.status_code == 403
    same = client.post(
        "/api/explain", json={"text": TEXT, "methods": ["rollout"]}, headers={"origin": "http://127.0.0.1:8765"}
    )
    assert same.status_code == 200


def test_every_response_carries_the_security_headers_and_nothing_points_off_the_machine(client):
    for path in ("/", "/static/explore.js", "/static/explore.css", "/api/models", "/api/nothing"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("/", "/static/explore.js", "/static/explore.css", "/static/page.css"):
        text = client.get(path).text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/static/report.js").status_code == 404
    assert client.get("/static/..%2Fexplore.py").status_code == 404


def test_the_page_has_the_stable_test_ids(client):
    page = client.get("/").text
    for test_id in (
        "text",
        "text-pair",
        "model",
        "methods",
        "explain",
        "prediction",
        "flow-graph",
        "threshold",
        "layer",
        "head",
    ):
        assert f'data-testid="{test_id}"' in page
    assert '<script src="static/explore.js"></script>' in page


# ---------------------------------------------------------------------------------------------- other endpoints
def test_heads_gives_one_layers_heads_on_demand(client, models):
    found = _explain(client, text=TEXT, methods=["attattr"], heads=False)
    expected = attrflow.explain(models["bert"], TEXT, methods=["attattr"], options=FAST).result
    block = client.get(f"/api/heads/{found['id']}?kind=attribution&layer=1&encoding=exact").json()
    assert block["layers"] == [1] and block["heads"] == [0, 1, 2, 3]
    assert np.array_equal(decode_array(block["data"])[0], expected.attributions[1].numpy())
    one = client.get(f"/api/heads/{found['id']}?kind=attention&head=2&encoding=exact").json()
    assert np.array_equal(decode_array(one["data"])[:, 0], expected.attentions[:, 2].numpy())
    assert client.get(f"/api/heads/{found['id']}?kind=values").status_code == 422
    assert client.get(f"/api/heads/{found['id']}?layer=7").status_code == 422
    assert client.get(f"/api/heads/{found['id']}?layer=x").status_code == 400
    assert client.get("/api/heads/0123456789abcdef").status_code == 404


def test_report_is_the_self_contained_report_file(client):
    found = _explain(client, text="the plot was <b>fun</b>", methods=["attattr", "rollout"])
    response = client.get(f"/api/report/{found['id']}")
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    assert "<!DOCTYPE html>" in response.text and "<b>fun" not in response.text


def test_progress_streams_as_ndjson_and_ends_with_the_same_result(client):
    body = {"text": "a good film", "model": "bert", "methods": ["rollout", "attattr"], "options": FAST}
    with client.stream("POST", "/api/explain", json=body, headers={"accept": "application/x-ndjson"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[0]["event"] == "job" and lines[-1]["event"] == "result"
    assert all(line["event"] == "progress" for line in lines[1:-1])
    plain = client.post("/api/explain", json=body).json()
    assert lines[-1]["data"]["methods"] == plain["methods"]
    status = client.get(f"/api/jobs/{lines[0]['id']}").json()
    assert status["state"] == "done" and status["done"] == status["total"] == 2


def test_identical_requests_are_answered_from_the_cache(client):
    calls = []

    @register_method
    class Counted(Method):
        name = "test-counted"
        description = "counts its calls"

        def compute(self, context: ExplainContext) -> attrflow.TokenScores:
            calls.append(1)
            return context.result(self.name, torch.ones(context.n), "ones", reads_output=False)

    try:
        first = _explain(client, text="fun film", methods=["test-counted"])
        again = _explain(client, text="fun film", methods=["test-counted"], encoding="lists")
        other = _explain(client, text="fun films", methods=["test-counted"])
    finally:
        unregister_method("test-counted")
    assert len(calls) == 2 and first["id"] == again["id"] != other["id"]
    assert first["seconds"] == again["seconds"]


# ---------------------------------------------------------------------------------------------- generic methods
def test_any_registered_method_is_listed_and_run_including_ones_without_matrices(client):
    @register_method
    class PerLayer(Method):
        name = "test-per-layer"
        description = "per-layer scores, no matrices"
        produces = frozenset({"layer_scores"})
        reads_output = False

        def compute(self, context: ExplainContext) -> attrflow.TokenScores:
            scores = torch.arange(context.model.num_layers * context.n, dtype=torch.float32).view(-1, context.n)
            return context.result(self.name, scores, "rows", layers=range(context.model.num_layers), reads_output=False)

    @register_method
    class EncodersOnly(Method):
        name = "test-encoders-only"
        description = "refuses decoders"

        def unsupported(self, model: attrflow.Model) -> str | None:
            return "decoders are not supported" if model.causal else None

        def compute(self, context: ExplainContext) -> attrflow.TokenScores:
            return context.result(self.name, torch.ones(context.n), "ones")

    try:
        infos = {m["name"]: m for m in client.get("/api/models").json()}
        methods = [m["name"] for m in client.get("/api/methods").json()]
        found = _explain(client, text=TEXT, methods=["test-per-layer", "rollout"])
        refused = client.post(
            "/api/explain", json={"text": "the movie", "model": "gpt2", "methods": ["test-encoders-only"]}
        )
    finally:
        unregister_method("test-per-layer")
        unregister_method("test-encoders-only")
    assert "test-per-layer" in methods and "test-encoders-only" in methods
    assert infos["gpt2"]["unsupported"]["test-encoders-only"] == "decoders are not supported"
    assert "test-encoders-only" in infos["bert"]["methods"]
    entry = found["methods"]["test-per-layer"]
    assert entry["matrices"] is None and entry["per_layer"] and len(entry["scores"]) == 3
    assert refused.status_code == 422 and "decoders are not supported" in refused.json()["error"]


# ---------------------------------------------------------------------------------------------- the engine
class _Gate:
    """A registered method that waits for a signal and records how many of its computations overlap."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()
        gate = self

        class Blocking(Method):
            name = "test-blocking"
            description = "waits"
            reads_output = False

            def compute(self, context: ExplainContext) -> attrflow.TokenScores:
                with gate.lock:
                    gate.active += 1
                    gate.most = max(gate.most, gate.active)
                gate.entered.release()
                gate.release.wait(10)
                with gate.lock:
                    gate.active -= 1
                return context.result(self.name, torch.ones(context.n), "ones", reads_output=False)

        register_method(Blocking)

    def close(self) -> None:
        self.release.set()
        unregister_method("test-blocking")


@pytest.fixture
def gate():
    gate = _Gate()
    yield gate
    gate.close()


def _request(text: str, model: str = "bert", methods: tuple[str, ...] = ("test-blocking",)):
    return parse_explain_request({"text": text, "model": model, "methods": list(methods)}, models=["bert", "gpt2"])


def test_one_model_runs_one_forward_at_a_time_and_two_models_run_side_by_side(explorer, gate):
    first, second = explorer.submit(_request("the film")), explorer.submit(_request("a film"))
    assert gate.entered.acquire(timeout=10)
    time.sleep(0.2)
    assert gate.active == 1 and second.state == "queued"  # the same model waits
    other = explorer.submit(_request("the film", model="gpt2"))
    assert gate.entered.acquire(timeout=10)  # another model runs meanwhile
    assert gate.active == 2
    gate.release.set()
    for job in (first, second, other):
        job.future.result(timeout=10)
    assert gate.most == 2  # never two on one model: bert's second job started after its first ended


def test_jobs_are_cancelled_before_they_start_or_between_methods(explorer, client, gate):
    running = explorer.submit(_request("the good film", methods=("test-blocking", "rollout")))
    waiting = explorer.submit(_request("the bad film"))
    assert gate.entered.acquire(timeout=10)
    assert running.state == "running" and running.stage == "test-blocking"
    status = client.delete(f"/api/jobs/{running.id}").json()
    assert status["id"] == running.id
    assert explorer.cancel(waiting.id) and not explorer.cancel("no-such-job")
    gate.release.set()
    for job in (running, waiting):
        with pytest.raises(JobCancelledError):
            job.future.result(timeout=10)
    assert running.state == waiting.state == "cancelled"
    assert running.done == 0 and gate.entered.acquire(timeout=0.5) is False  # neither rollout nor the waiting job ran
    assert client.get(f"/api/jobs/{running.id}").json()["state"] == "cancelled"
    assert client.get("/api/jobs/nope").status_code == 404


def test_a_running_request_is_shared_by_identical_requests(explorer, gate):
    first = explorer.submit(_request("the same film"))
    again = explorer.submit(_request("the same film"))
    assert again is first
    gate.release.set()
    assert first.future.result(timeout=10) is again.future.result(timeout=10)


def test_closing_answers_waiting_requests_at_once_and_refuses_new_ones(models, gate):
    explorer = Explorer({"bert": models["bert"]})
    running = explorer.submit(_request("the long film"))
    waiting = explorer.submit(_request("the next film"))
    assert gate.entered.acquire(timeout=10)
    explorer.close()
    for job in (running, waiting):
        with pytest.raises(JobCancelledError, match="shutting down"):
            job.future.result(timeout=1)  # answered while the method still runs
    assert explorer.join(timeout=0.2) is False  # the running method finishes first
    late = explorer.submit(_request("a late film"))
    with pytest.raises(JobCancelledError):
        late.future.result(timeout=1)
    gate.release.set()
    assert explorer.join(timeout=10) is True
    assert gate.entered.acquire(timeout=0.5) is False  # the waiting job never ran


def test_the_cache_is_bounded_in_bytes(models):
    explorer = Explorer({"bert": models["bert"]}, cache_bytes=1)
    try:
        for text in ("the film", "a film", "good film"):
            explorer.submit(_request(text, methods=("rollout",))).future.result(timeout=30)
        assert explorer.computed(_request("good film", methods=("rollout",)).key()) is not None
        assert explorer.computed(_request("the film", methods=("rollout",)).key()) is None
    finally:
        explorer.close()


def test_image_models_are_refused_with_a_reason():
    vit = attrflow.load_model(build("vit"))
    with pytest.raises(attrflow.InvalidInputError, match="explains text models"):
        Explorer({"vit": vit})
