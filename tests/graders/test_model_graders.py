"""score_model / label_model against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from graders import BatchGrader, run_grader
from graders.impl.model import JudgeParseError, parse_label, parse_score


class JudgeServer:
    """A tiny chat-completions server whose reply is chosen per test."""

    def __init__(self) -> None:
        self.reply: dict = {"content": '{"result": 0.5}'}
        self.status = 200
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if server.status != 200:
                    payload = b'{"error": {"message": "overloaded"}}'
                    self.send_response(server.status)
                else:
                    message = {"role": "assistant", "content": server.reply.get("content"),
                               "refusal": server.reply.get("refusal")}
                    payload = json.dumps({
                        "id": "x", "object": "chat.completion", "model": "judge-1",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def judge_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[JudgeServer]:
    server = JudgeServer()
    monkeypatch.setenv("RFT_JUDGE_BASE_URL", server.url)
    monkeypatch.setenv("RFT_JUDGE_API_KEY", "sk-test")
    yield server
    server.close()


SCORE = {
    "type": "score_model", "name": "judge", "model": "judge-1", "range": [0, 10],
    "sampling_params": {"temperature": 0, "seed": 7, "max_completions_tokens": 20},
    "input": [{"role": "system", "content": "You grade answers."},
              {"role": "user", "content": "Question: {{item.question}}\nAnswer: {{sample.output_text}}"}],
}
LABEL = {
    "type": "label_model", "name": "labeler", "model": "judge-1", "labels": ["correct", "incorrect"],
    "passing_labels": ["correct"], "input": [{"role": "user", "content": "Is {{sample.output_text}} right?"}],
}


def test_score_model_sends_rendered_prompt_and_reads_the_score(judge_server: JudgeServer) -> None:
    judge_server.reply = {"content": '{"result": 7.5, "steps": []}'}
    result = run_grader(SCORE, "46", {"question": "12+34="}, judge={"base_url": judge_server.url, "api_key": "k2"})
    assert result.reward == 7.5 and not result.errors
    data = result.to_dict()
    assert data["metadata"]["token_usage"] == 15 and data["metadata"]["sampled_model_name"] == "judge-1"
    assert data["model_grader_token_usage_per_model"] == {
        "judge-1": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    request = judge_server.requests[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k2"
    body = request["body"]
    assert body["model"] == "judge-1" and body["temperature"] == 0 and body["seed"] == 7
    assert body["max_completion_tokens"] == 20
    assert body["messages"][1] == {"role": "user", "content": "Question: 12+34=\nAnswer: 46"}


@pytest.mark.parametrize(("content", "reward"), [("42", 10.0), ("-3", 0.0), ("```json\n{\"score\": 3}\n```", 3.0),
                                                 ("Reasoning... final: {\"result\": \"4\"}", 4.0)])
def test_score_is_parsed_and_clamped(judge_server: JudgeServer, content: str, reward: float) -> None:
    judge_server.reply = {"content": content}
    result = run_grader(SCORE, "46", {"question": "q"})
    assert result.reward == reward and not result.errors
    assert judge_server.requests[-1]["auth"] == "Bearer sk-test"


def test_unparseable_score_and_refusal(judge_server: JudgeServer) -> None:
    judge_server.reply = {"content": "I think it is pretty good"}
    assert run_grader(SCORE, "46", {"question": "q"}).errors == {"model_grader_parse_error"}
    judge_server.reply = {"content": None, "refusal": "I can't help with that."}
    assert run_grader(SCORE, "46", {"question": "q"}).errors == {"model_grader_refusal_error"}


def test_http_failure_is_a_server_error(judge_server: JudgeServer) -> None:
    judge_server.status = 503
    result = run_grader(SCORE, "46", {"question": "q"})
    assert result.reward == 0.0 and result.errors == {"model_grader_server_error"}
    assert "503" in result.to_dict()["metadata"]["errors"]["model_grader_server_error_details"]
    unreachable = run_grader(SCORE, "46", {"question": "q"}, judge={"base_url": "http://127.0.0.1:9/v1", "timeout": 2})
    assert unreachable.errors == {"model_grader_server_error"}


def test_no_judge_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RFT_JUDGE_BASE_URL", raising=False)
    result = run_grader(SCORE, "46", {"question": "q"})
    assert result.errors == {"model_grader_server_error"}
    assert "RFT_JUDGE_BASE_URL" in result.details["model_grader_server_error_details"]


def test_missing_template_variable_never_calls_the_judge(judge_server: JudgeServer) -> None:
    result = run_grader(SCORE, "46", {})
    assert result.errors == {"invalid_variable_error"} and judge_server.requests == []


@pytest.mark.parametrize(("content", "reward", "errors"), [
    ('{"result": "correct"}', 1.0, set()), ("Incorrect.", 0.0, set()), ('{"label": "CORRECT"}', 1.0, set()),
    ("maybe", 0.0, {"model_grader_parse_error"}),
])
def test_label_model(judge_server: JudgeServer, content: str, reward: float, errors: set[str]) -> None:
    judge_server.reply = {"content": content}
    result = run_grader(LABEL, "46", {})
    assert result.reward == reward and result.errors == errors
    assert "correct" in judge_server.requests[-1]["body"]["messages"][-1]["content"]


def test_batch_of_judged_samples_runs_concurrently_in_order(judge_server: JudgeServer) -> None:
    judge_server.reply = {"content": "5"}
    multi = {"type": "multi", "name": "m", "calculate_output": "judge / 10",
             "graders": {"judge": SCORE}}
    with BatchGrader(multi, max_workers=4) as batch:
        result = batch.grade([str(i) for i in range(12)], [{"question": "q"}] * 12)
    assert result.rewards == [0.5] * 12 and result.errors == {}
    assert len(judge_server.requests) == 12


def test_parsers() -> None:
    assert parse_score(' {"result": 0.7} ') == 0.7
    assert parse_score("0.3") == 0.3
    with pytest.raises(JudgeParseError):
        parse_score('{"result": "high"}')
    assert parse_label('"good"', ["good", "bad"]) == "good"
    with pytest.raises(JudgeParseError):
        parse_label("good or bad", ["good", "bad"])
