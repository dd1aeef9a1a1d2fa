"""The editing service shared by ``mredit edit`` and ``mredit serve`` (``mredit.editing``), in Python: any model
``mredit edit`` opens, checked options, the reward sweep; the page of a model without rewards; the command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from smartedit_helpers import tiny_module

from mredit.cli import main
from mredit.editing import EditOptions, check_options, open_model
from mredit.editing.service import wrap


def test_python_edits_and_sweeps_with_the_checkpoint(reward_checkpoint, photo):
    image = Image.open(photo)
    with open_model(reward_checkpoint, num_threads=1) as model:
        assert model.has_rewards and not model.reward_guidance and model.resolution.resolution == 16
        assert model.schedulers == ("auto", "euler_a", "ddim", "dpmpp") and model.fitted_size((720, 477)) == (16, 12)
        best = model.edit(image, "make it red", EditOptions(num_inference_steps=4))
        worst = model.edit(image, "make it red", EditOptions(scores=(0, 0, 0), num_inference_steps=4))
        assert best.size == (16, 12) and not np.array_equal(np.asarray(best), np.asarray(worst))
        kept = model.edit(image, "make it red", EditOptions(num_inference_steps=2, keep_size=True))
        assert kept.size == (720, 477)
        sweep = model.sweep(image, "make it red", EditOptions(num_inference_steps=2), x=("quality", (0, 5)))
        assert sorted(sweep.edits) == [(0, 0), (0, 2.5), (0, 5), (5, 0), (5, 2.5), (5, 5)]
        assert np.array_equal(np.asarray(sweep.edits[(5, 5)]), np.asarray(model.edit(
            image, "make it red", EditOptions(num_inference_steps=2)
        )))  # fmt: skip
        assert sweep.fixed == ("following", 5.0) and sweep.grid.width > 2 * 128
        with pytest.raises(ValueError, match="reward guidance"):
            model.edit(image, "x", EditOptions(reward_guidance_scale=2))
        with pytest.raises(ValueError, match="two different perspectives"):
            model.sweep(image, "x", x=("quality", (0, 5)), y=("quality", (0, 5)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (EditOptions(scores=(5, 5, 9)), "three numbers in [0, 5]"),
        (EditOptions(feedback=("a", "b")), "three texts"),
        (EditOptions(num_inference_steps=0), "num_inference_steps must be a whole number"),
        (EditOptions(seed=-3), "seed must be a whole number"),
        (EditOptions(text_guidance_scale=float("nan")), "text_guidance_scale must be a finite number"),
        (EditOptions(image_guidance_scale=-1), "image_guidance_scale must be >= 0"),
        (EditOptions(scheduler="euler"), "unknown scheduler 'euler'"),
    ],
)
def test_bad_options_name_the_setting(options, message):
    with pytest.raises(ValueError) as failure:
        check_options(options)
    assert message in str(failure.value)


def test_a_model_without_rewards_gets_a_page_with_the_sliders_off(baseline_export, photo):
    from mredit.serve.app import EditorApp, gr

    with open_model(baseline_export, resolution=16) as model:
        assert not model.has_rewards and "no reward conditioner" in model.description
        editor = EditorApp(model)
        config = editor.blocks().config
        props = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
        assert all(props[f"score-{name}"]["interactive"] is False for name in ("following", "preserving", "quality"))
        assert props["sweep-button"]["interactive"] is False and "no-rewards-note" in props
        edited, baseline, note = editor.edit(Image.open(photo), "make it red", num_inference_steps=2)
        assert edited.size == (16, 12) and baseline is None and "no reward conditioner: rewards ignored" in note
        with pytest.raises(gr.Error, match="no reward conditioner"):
            editor.sweep(Image.open(photo), "make it red")


def test_a_smartedit_module_edits_through_the_same_service_and_page(photo):
    from mredit.serve.app import EditorApp

    model = wrap(tiny_module(stage="smartedit"), "tiny SmartEdit", resolution=32)
    assert model.pipe is None and model.schedulers[0] == "auto" and "SmartEditModule" in model.description
    edited, _, note = EditorApp(model).edit(Image.open(photo), "make it red", num_inference_steps=2)
    assert edited.size == model.fitted_size((720, 477)) and "resized to" in note


def test_the_command_line(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "none")]) == 1
    assert "mredit serve: error: model not found" in capsys.readouterr().err
    assert main(["serve", "--model", "m", "--port", "70000"]) == 1
    assert "--port must be in [1, 65535]" in capsys.readouterr().err
    code = (
        "import sys; from mredit.cli import main; "
        "[main(argv) for argv in (['--help'], ['serve', '--help'], ['edit', '--help'])]; "
        "print('gradio' in sys.modules, 'playwright' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--baseline" in out.stdout and "--max_inference_steps" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False False"  # gradio is imported when a server starts only


@pytest.mark.slow
def test_mredit_serve_starts_on_localhost_with_the_demo_test_set_as_examples(
    reward_checkpoint, baseline_export, free_port, tmp_path
):
    """The command as `make serve` runs it: the models, the examples from `reports/demo/data/test` under the
    working directory by default, 127.0.0.1; Ctrl-C stops it."""
    import os
    import signal

    import httpx

    from mredit.synth.generate import write_synth_shards

    write_synth_shards(tmp_path / "reports" / "demo" / "data" / "test", "test", 7, resolution=16, seed=0)
    port = free_port()
    command = [sys.executable, "-m", "mredit", "serve", "--model", str(reward_checkpoint)]
    command += ["--baseline", str(baseline_export), "--port", str(port), "--num_examples", "3"]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in server.stdout:  # the line saying where it listens, once the server is up
            lines.append(line)
            if "open http" in line:
                break
        assert f"mredit serve: open http://127.0.0.1:{port}/" in "".join(lines), "".join(lines) + server.stderr.read()
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "mredit" in page.text
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).json()
        examples = [c for c in config["components"] if c["props"].get("elem_id") == "examples"]
        assert len(examples) == 1 and len(examples[0]["props"]["samples"]) == 3  # from the shards, one per category
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_reward_guidance_is_on_for_a_model_with_a_null_condition(photo):
    from tiny_model import reward_pipeline

    from mredit.serve.app import EditorApp

    model = wrap(reward_pipeline(vae="pixel", null_condition=True), "null-condition model", resolution=16)
    assert model.reward_guidance and "learned null condition" in model.description
    editor = EditorApp(model)
    assert editor.info()["ranges"]["reward_guidance_scale"] == [0.0, 10.0]
    plain, _, _ = editor.edit(Image.open(photo), "make it red", num_inference_steps=2)
    guided, _, _ = editor.edit(Image.open(photo), "make it red", num_inference_steps=2, reward_guidance_scale=3)
    assert guided.size == plain.size and not np.array_equal(np.asarray(plain), np.asarray(guided))
