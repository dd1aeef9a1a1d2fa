"""A small OpenAI-compatible HTTP server on 127.0.0.1 for offline judge tests and the throughput benchmark.

Real sockets, real ``openai`` client. Implements chat completions (also the Azure deployment path), files and
batches. Answers are deterministic functions of the instruction; faults are injected per sample by a token in
the instruction, ``#fault=<name>[x<times>]``:

- ``429``: 429 rate limit with ``retry-after-ms``; ``500``: internal error; ``timeout``: sleep past the client
  timeout (each for the first ``times`` attempts, default 1, then a normal answer)
- ``down``: 503 forever; ``quota``: 429 ``insufficient_quota``; ``malformed``: unparseable text;
  ``refusal``: ``message.refusal`` (the first ``times`` attempts if ``x<times>`` is given, else always);
  ``length``: truncated answer with ``finish_reason="length"``;
  ``batcherror``: the line lands in the batch error file; ``batchmissing``: absent from both batch files

Every chat-completions request body is kept in ``received`` (in arrival order), so tests can check the exact request
shape; ``answer`` (a function of the request body returning the answer text) replaces the default answers.

Run standalone: ``python tests/helpers/fake_server.py --latency 0.05`` prints ``PORT <n>`` and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT = re.compile(r"#fault=(\w+?)(?:x(\d+))?\b")
PAPER_VERDICTS = {"following": "following", "preserving": "consistent", "quality": "clear"}
COMBINED = {"following": "instruction_following", "preserving": "detail_preserving", "quality": "generation_quality"}


def expected_scores(instruction: str) -> dict[str, int]:
    """The deterministic scores the fake judge gives an instruction (tests compare against this)."""
    digest = hashlib.sha256(instruction.encode("utf-8")).digest()
    return {p: digest[i] % 6 for i, p in enumerate(COMBINED)}


class FakeJudgeServer:
    def __init__(
        self,
        latency: float = 0.0,
        structured: bool = True,
        api_key: str = "test-key",
        timeout_sleep: float = 2.0,
        answer: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.latency, self.structured, self.api_key, self.timeout_sleep = latency, structured, api_key, timeout_sleep
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.chat_requests = 0
        self.in_flight = self.peak_in_flight = 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeJudgeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- chat ---------------------------------------------------------------------------------------------
    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) for one chat-completions request body."""
        system, text, images = "", "", 0
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                system += content
                continue
            for part in content:
                if part.get("type") == "text":
                    text += part["text"]
                elif part.get("type") == "image_url":
                    images += 1
        instruction = text.split("Editing instruction: ", 1)[-1].split("\n", 1)[0]
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not self.structured:
            return 400, _error("response_format json_schema is not supported by this server", None), {}
        schema_name = fmt.get("json_schema", {}).get("name") if fmt else self._lenient_schema_name(text)
        fault, times = None, 1
        match = FAULT.search(text)
        if match:
            fault, times = match.group(1), int(match.group(2) or 1)
        with self.lock:
            self.chat_requests += 1
            self.received.append(body)
            attempt_key = f"{schema_name}|{instruction}"  # a retry with a mitigation note counts as an attempt
            attempt = self.attempts[attempt_key] = self.attempts.get(attempt_key, 0) + 1
        if fault == "429" and attempt <= times:
            return 429, _error("Rate limit reached", "rate_limit_exceeded"), {"retry-after-ms": "10"}
        if fault == "500" and attempt <= times:
            return 500, _error("The server had an error", None), {}
        if fault == "timeout" and attempt <= times:
            time.sleep(self.timeout_sleep)
        if fault == "down":
            return 503, _error("Service unavailable", None), {}
        if fault == "quota":
            return 429, _error("You exceeded your current quota", "insufficient_quota"), {}
        usage = {"prompt_tokens": 100 + 255 * images, "completion_tokens": 50, "total_tokens": 150 + 255 * images}
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if fault == "refusal" and (match.group(2) is None or attempt <= times):
            message["refusal"] = "I'm sorry, I can't help with that."
        elif fault == "malformed":
            message["content"] = "The edit looks fine overall, score four-ish {not json"
        elif self.answer is not None:
            message["content"] = self.answer(body)
        else:
            answer = self._answer(schema_name, instruction)
            if fault == "length":
                answer, finish = answer[: len(answer) // 2], "length"
            elif not fmt:
                answer = f"Sure! Here is my rating:\n```json\n{answer}\n```\nHope this helps."
            message["content"] = answer
        completion = {
            "id": f"chatcmpl-{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": finish, "message": message, "logprobs": None}],
            "usage": usage,
        }
        return 200, completion, {}

    @staticmethod
    def _lenient_schema_name(text: str) -> str:
        if "instruction_following" in text:
            return "edit_judgement"
        for perspective, verdict in PAPER_VERDICTS.items():
            if f'"{verdict}"' in text:
                return f"paper_{perspective}"
        return "edit_judgement"

    def _answer(self, schema_name: str | None, instruction: str) -> str:
        scores = expected_scores(instruction)
        lenient = not self.structured
        if schema_name and schema_name.startswith("paper_"):
            perspective = schema_name[len("paper_") :]
            score = scores[perspective]
            answer = {
                "reason": "None" if score == 5 else "visible defect",
                PAPER_VERDICTS[perspective]: "yes" if score >= 4 else "no",
            }
            answer["score"] = f"{score}/5" if lenient else float(score)
            return json.dumps(answer)
        answer = {
            COMBINED[p]: {
                "failure_points": "None" if s == 5 else f"{p} defect {s}",
                "success": s >= 4,
                "score": f"{s}/5" if lenient else s,
            }
            for p, s in scores.items()
        }
        return json.dumps(answer)

    # -- batch --------------------------------------------------------------------------------------------
    def run_batch(self, batch: dict[str, Any]) -> None:
        lines = self.files[batch["input_file_id"]].decode("utf-8").splitlines()
        outputs, errors = [], []
        for i, line in enumerate(lines):
            request = json.loads(line)
            text = json.dumps(request["body"])
            if "#fault=batchmissing" in text:
                continue
            if "#fault=batcherror" in text:
                errors.append(
                    {
                        "id": f"batch_req_{i}",
                        "custom_id": request["custom_id"],
                        "response": None,
                        "error": {"code": "server_error", "message": "failed in batch"},
                    }
                )
                continue
            status, body, _ = self.chat(request["body"])
            outputs.append(
                {
                    "id": f"batch_req_{i}",
                    "custom_id": request["custom_id"],
                    "response": {"status_code": status, "request_id": f"req_{i}", "body": body},
                    "error": None,
                }
            )
        random.Random(0).shuffle(outputs)  # the API returns lines in arbitrary order
        batch["output_file_id"] = self._store_file("\n".join(json.dumps(o) for o in outputs).encode() + b"\n")
        if errors:
            batch["error_file_id"] = self._store_file("\n".join(json.dumps(e) for e in errors).encode() + b"\n")
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}

    def _store_file(self, data: bytes) -> str:
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return file_id

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json" if raw is None else "application/octet-stream")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
                    self.close_connection = True

            def _authorised(self) -> bool:
                key = self.headers.get("api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
                if key == server.api_key:
                    return True
                self._send(401, _error("Incorrect API key provided", "invalid_api_key"))
                return False

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = self.rfile.read(length)
                if not self._authorised():
                    return
                path = self.path.split("?", 1)[0]
                if path.endswith("/chat/completions"):
                    with server.lock:
                        server.in_flight += 1
                        server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                    if server.latency:
                        time.sleep(server.latency)
                    status, body, headers = server.chat(json.loads(payload))
                    with server.lock:
                        server.in_flight -= 1
                    self._send(status, body, headers)
                elif path == "/v1/files":
                    data = _multipart_file(self.headers.get("content-type", ""), payload)
                    file_id = server._store_file(data)
                    self._send(
                        200,
                        {
                            "id": file_id,
                            "object": "file",
                            "bytes": len(data),
                            "created_at": 0,
                            "filename": "batch.jsonl",
                            "purpose": "batch",
                            "status": "processed",
                        },
                    )
                elif path == "/v1/batches":
                    request = json.loads(payload)
                    batch = {
                        "id": f"batch_{len(server.batches) + 1}",
                        "object": "batch",
                        "endpoint": request["endpoint"],
                        "completion_window": request["completion_window"],
                        "created_at": int(time.time()),
                        "input_file_id": request["input_file_id"],
                        "status": "validating",
                        "metadata": request.get("metadata"),
                        "output_file_id": None,
                        "error_file_id": None,
                        "errors": None,
                        "polls": 0,
                    }
                    server.batches[batch["id"]] = batch
                    self._send(200, _public(batch))
                else:
                    self._send(404, _error(f"no route {path}", None))

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                path = self.path.split("?", 1)[0]
                if path.startswith("/v1/batches/"):
                    batch = server.batches.get(path.rsplit("/", 1)[1])
                    if batch is None:
                        return self._send(404, _error("no such batch", None))
                    batch["polls"] += 1
                    if batch["polls"] == 1:
                        batch["status"] = "in_progress"
                    elif batch["status"] == "in_progress":
                        server.run_batch(batch)
                        batch["status"] = "completed"
                    self._send(200, _public(batch))
                elif path.startswith("/v1/files/") and path.endswith("/content"):
                    data = server.files.get(path.split("/")[3])
                    if data is None:
                        return self._send(404, _error("no such file", None))
                    self._send(200, None, raw=data)
                else:
                    self._send(404, _error(f"no route {path}", None))

        return Handler


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "polls"}


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _multipart_file(content_type: str, payload: bytes) -> bytes:
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    for part in payload.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return body.rsplit(b"\r\n", 1)[0]
    raise ValueError("multipart body without a file part")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default="test-key")
    args = parser.parse_args()
    fake = FakeJudgeServer(latency=args.latency, api_key=args.api_key)
    print(f"PORT {fake.port}", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
