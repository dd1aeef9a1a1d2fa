"""Pluggable judge prompts: the built-in protocols are YAML files, a prompts file reproduces a protocol's request
shape exactly (checked on the requests the fake server received), and the parser reads Python-dict answers."""

from __future__ import annotations

import ast
import base64
import io
import json
import random
import shutil

import pytest
from judge_helpers import API_KEY, tiny_image
from PIL import Image

from mredit.cli import main
from mredit.judge.evaluate import evaluate_edits
from mredit.judge.parsing import parse_answer
from mredit.judge.prompts import PROMPT_VERSION
from mredit.judge.protocol import PROTOCOLS_DIR, AnswerKeys, ProtocolError, builtin_protocol, load_protocol

# a protocol in the shape of the released gpt_eval scripts: one call per perspective, a system text, the question in
# the user text asking for a Python dict string, JPEG images at PIL's default quality and their own size, no detail
# field, 50 answer tokens, no temperature, no seed, no response_format (our own texts, not the scripts')
SYSTEM = {
    "following": "You check whether an edited image carries out an editing instruction.",
    "preserving": "You check whether an edit left the rest of the image unchanged.",
    "quality": "You rate the visual quality of an edited image.",
}
QUESTION = {
    "following": "Instruction: {instruction}\nFirst image: original. Second image: edited.\n"
    "Answer with a Python dictionary string like {'following': 'yes', 'score': 4.5}.",
    "preserving": "Instruction: {instruction}\nFirst image: original. Second image: edited.\n"
    "Answer with a Python dictionary string like {'consistent': 'no', 'score': 2.0}.",
    "quality": "Answer with a Python dictionary string like {'clear': 'yes', 'score': 3.5}.",
}
VERDICT = {"following": "following", "preserving": "consistent", "quality": "clear"}
IMAGES = {"following": ["source", "edited"], "preserving": ["source", "edited"], "quality": ["edited"]}
ANSWERS = {"following": "\"{'following': 'yes', 'score': 4.5}\"", "preserving": "{'consistent': 'no', 'score': 2}"}
ANSWERS["quality"] = "```python\n{'clear': 'yes', 'score': 3.5}\n```"


def _gpt_eval_yaml() -> str:
    lines = ["name: gpt-eval-shape", "response_format: none", "image: {format: jpeg, quality: 75, max_side: null,"]
    lines += ["  detail: null}", "request: {temperature: null, seed: null}", "perspectives:"]
    for p in SYSTEM:
        lines += [f"  {p}:", f"    system: {json.dumps(SYSTEM[p])}", f"    user: {json.dumps(QUESTION[p])}"]
        lines += [f"    images: {json.dumps(IMAGES[p])}", f"    answer: {{verdict: {VERDICT[p]}, score: score}}"]
        lines += ["    max_tokens: 50"]
    return "\n".join(lines) + "\n"


def _jpeg_url(image: Image.Image) -> str:
    """The scripts' encoding, written independently: PIL's default JPEG save, base64, no resize."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _answer(body: dict) -> str:
    text = body["messages"][-1]["content"][0]["text"]
    for perspective, verdict in VERDICT.items():
        if f"{{'{verdict}'" in text:
            return ANSWERS[perspective]
    raise AssertionError(text)


def _benchmark(tmp_path, rng):
    (tmp_path / "images").mkdir()
    (tmp_path / "edits").mkdir()
    images, lines = {}, []
    for item_id, instruction in (("x1", "make the sky pink"), ("x2", "add a hat")):
        source, edited = tiny_image(rng, 24), tiny_image(rng, 20)
        source.save(tmp_path / "images" / f"{item_id}.png")
        edited.save(tmp_path / "edits" / f"{item_id}.png")
        images[item_id] = (instruction, source, edited)
        lines.append(json.dumps({"id": item_id, "image": f"images/{item_id}.png", "instruction": instruction}))
    (tmp_path / "bench.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "bench.jsonl", images


def test_a_prompts_file_reproduces_the_gpt_eval_request_shape_exactly(tmp_path, fake_server, monkeypatch, capsys):
    fake_server.answer = _answer
    bench, images = _benchmark(tmp_path, random.Random(3))
    prompts = tmp_path / "gpt_eval.yaml"
    prompts.write_text(_gpt_eval_yaml())
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    argv = ["judge", "eval", "--edits", str(tmp_path / "edits"), "--benchmark", str(bench), "--out"]
    argv += [str(tmp_path / "out"), "--judge", "compatible", "--lvlm.base_url", fake_server.base_url]
    assert main([*argv, "--prompts", str(prompts), "--lvlm.model", "gpt-4o-2024-05-13"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["coverage"]["judged"] == 2
    expected = []
    for instruction, source, edited in images.values():
        urls = {"source": _jpeg_url(source), "edited": _jpeg_url(edited)}
        for p in SYSTEM:
            text = QUESTION[p].replace("{instruction}", instruction)
            parts = [{"type": "image_url", "image_url": {"url": urls[name]}} for name in IMAGES[p]]
            user = {"role": "user", "content": [{"type": "text", "text": text}, *parts]}
            messages = [{"role": "system", "content": SYSTEM[p]}, user]
            expected.append({"model": "gpt-4o-2024-05-13", "messages": messages, "max_tokens": 50})
    key = lambda body: json.dumps(body, sort_keys=True)  # noqa: E731  (the three calls arrive in any order)
    assert sorted(map(key, fake_server.received)) == sorted(map(key, expected))
    overall = printed["overall"]
    assert overall["following"]["score"] == 4.5 and overall["following"]["yes_rate"] == 1.0
    assert overall["preserving"]["score"] == 2.0 and overall["preserving"]["yes_rate"] == 0.0
    assert overall["quality"]["score"] == 3.5
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    fingerprint = results["judge"]
    assert fingerprint["mode"] == "gpt-eval-shape" and fingerprint["prompt_version"].startswith("gpt-eval-shape+")
    assert fingerprint["image_size"] is None and fingerprint["temperature"] is None and fingerprint["seed"] is None
    # an edited prompts file is another judge: everything is judged again
    prompts.write_text(_gpt_eval_yaml().replace("rate the visual", "rate the overall visual"))
    assert load_protocol(prompts).version != fingerprint["prompt_version"]


@pytest.mark.parametrize("mode", ["combined", "paper"])
def test_the_shipped_protocol_files_as_prompts_files_send_the_same_requests(tmp_path, make_judge, fake_server, mode):
    bench, _ = _benchmark(tmp_path, random.Random(4))
    evaluate_edits(tmp_path / "edits", bench, make_judge(mode=mode), tmp_path / "builtin", mode=mode)
    builtin = list(fake_server.received)
    fake_server.received.clear()
    copy = shutil.copy(PROTOCOLS_DIR / f"{mode}.yaml", tmp_path / f"my_{mode}.yaml")
    judge = make_judge(prompts=copy)
    results = evaluate_edits(tmp_path / "edits", bench, judge, tmp_path / "copy", mode=None)
    key = lambda body: json.dumps(body, sort_keys=True)  # noqa: E731
    assert sorted(map(key, fake_server.received)) == sorted(map(key, builtin))
    assert results["coverage"]["judged"] == 2
    assert builtin_protocol(mode).version == PROMPT_VERSION  # the built-in records keep their ids
    assert results["judge"]["prompt_version"] != PROMPT_VERSION and results["judge"]["prompts"]["file"] == copy.name
    with pytest.raises(ValueError, match="prompts file"):
        judge.mode = "combined"


def test_python_dict_and_rescaled_answers_parse():
    keys = {"following": AnswerKeys(verdict="following", score="score")}
    parsed = parse_answer("\"{'following': 'yes', 'score': 4.5}\"", keys)["following"]
    assert parsed.verdict is True and parsed.score == 4.5 and parsed.feedback == "None"
    assert ast.literal_eval("{'following': 'yes', 'score': 4.5}") == {"following": "yes", "score": 4.5}
    ten = {"quality": AnswerKeys(verdict="ok", score="rating", score_max=10)}
    assert parse_answer('{"OK": "no", "Rating": 8}', ten)["quality"].score == 4.0


def test_bad_prompts_files_are_one_line_errors_naming_the_key(tmp_path, fake_server, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_gpt_eval_yaml().replace("    answer: {verdict: clear, score: score}\n", ""))
    with pytest.raises(ProtocolError, match=r"perspectives.quality: missing 'answer'"):
        load_protocol(bad)
    bad.write_text(_gpt_eval_yaml().replace("max_side: null", "max_sid: null"))
    with pytest.raises(ProtocolError, match="unknown key.*max_sid"):
        load_protocol(bad)
    bench, _ = _benchmark(tmp_path, random.Random(5))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    argv = ["judge", "eval", "--edits", str(tmp_path / "edits"), "--benchmark", str(bench), "--out", str(tmp_path)]
    argv += ["--judge", "compatible", "--lvlm.base_url", fake_server.base_url, "--prompts", str(bad)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_sid" in err
    assert main([*argv[:-1], str(tmp_path / "missing.yaml")]) == 1
    assert "prompts file not found" in capsys.readouterr().err
    assert main([*argv, "--mode", "paper"]) == 1
    assert "not both" in capsys.readouterr().err
    oracle = ["judge", "eval", "--judge", "oracle", "--edits", str(tmp_path / "edits"), "--benchmark", str(bench)]
    assert main([*oracle, "--out", str(tmp_path / "o"), "--prompts", str(bad)]) == 1
    assert "the oracle judge takes no --prompts" in capsys.readouterr().err
