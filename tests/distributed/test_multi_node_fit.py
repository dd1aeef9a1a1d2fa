"""``mredit fit`` on 2 nodes x 1 process, both on 127.0.0.1: two ``torchrun --nnodes 2 --node_rank i`` launches
(gloo on CPU) of the tiny config. One node is killed mid-run; both are started again with ``--ckpt_path last``:
the run continues from the checkpoint's step, the nodes train on disjoint samples and end with identical weights.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from distributed_helpers import free_port, kill_node, log_tails, torchrun_node, wait_all
from training_helpers import cli_args, write_split_shards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills a node's processes through /proc"),
]


def _launch(port: int, args: list[str], root, name: str):
    logs = [root / f"{name}_node{rank}.log" for rank in (0, 1)]
    return [torchrun_node(rank, port, ["fit", *args], logs[rank]) for rank in (0, 1)], logs


def test_two_nodes_train_disjoint_samples_to_identical_weights_and_resume_after_a_node_is_killed(tmp_path):
    shards = write_split_shards(tmp_path / "shards")  # 4 train shards of 8: each node reads 2 of them
    base = cli_args(
        "ip2p_tiny.yaml",
        shards,
        tmp_path / "run",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",  # processes per node
        "--trainer.num_nodes=2",
        "--trainer.strategy=ddp",
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks.every_n_train_steps=2",
    )
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    # 1. both nodes train until the first checkpoint; then node 1 goes away (launcher and worker, SIGKILL)
    nodes, logs = _launch(free_port(), [*base, "--trainer.max_steps=100000"], tmp_path, "killed")
    try:
        deadline = time.monotonic() + 240
        while not last.exists():
            if any(node.poll() is not None for node in nodes) or time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint appeared:\n{log_tails(logs)}")
            time.sleep(0.2)
        time.sleep(0.5)  # kill it a little later, possibly in the middle of the next step or save
        kill_node(nodes[1])
        # the surviving node fails on its next collective instead of waiting for its peer forever
        (survivor_code,) = wait_all(nodes[:1], logs, timeout=120)
    finally:
        for node in nodes:
            if node.poll() is None:
                kill_node(node)
    assert survivor_code != 0
    killed_at = torch.load(last, weights_only=False)["global_step"]  # loads: the kill left no torn file
    assert killed_at >= 2

    # 2. both nodes again, from `last`, for two more steps, recording what each node trained on
    audit = tmp_path / "audit"
    target = killed_at + 2
    resume = [
        *base,
        f"--trainer.max_steps={target}",
        "--ckpt_path=last",
        "--trainer.callbacks+=mredit.callbacks.ddp_audit.DDPAudit",
        f"--trainer.callbacks.out_dir={audit}",
    ]
    nodes, logs = _launch(free_port(), resume, tmp_path, "resumed")
    codes = wait_all(nodes, logs, timeout=240)
    assert codes == [0, 0], log_tails(logs)

    ranks = [json.loads((audit / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [target, target]  # continued from the checkpoint's step
    keys = [set(r["keys"]) for r in ranks]
    assert [len(r["keys"]) for r in ranks] == [8, 8] and [len(k) for k in keys] == [8, 8]  # 2 steps x batch 4
    assert not keys[0] & keys[1]
    assert ranks[0]["parameters"] == ranks[1]["parameters"]
    assert torch.load(last, weights_only=False)["global_step"] == target
