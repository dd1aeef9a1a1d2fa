"""Experiments share identical work: data folders made with the same settings, and finished runs trained with the
same ``mredit fit`` command, config files and data, in sibling work folders (``runs/experiments/*``).

A run's own paths (its folder, its data folder) differ between experiments, so runs are compared through a
*portable* record with those paths replaced by placeholders and the data's settings added.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mredit.lab.workflow import (
    DONE_MARKER,
    DataSpec,
    TrainSpec,
    checkpoint_path,
    data_settings,
    is_done,
    is_trained,
    run_record,
    step_checkpoint_path,
    train_command,
)


def copy_identical_data(out_dir: Path, spec: DataSpec, search_root: Path, log=print) -> bool:
    """Copy into ``out_dir`` a finished data folder of ``<search_root>/*/data/*`` made with the same settings
    (unless ``out_dir`` is finished itself); True when one was copied."""
    settings = data_settings(spec)
    if is_done(out_dir, settings):
        return False
    markers = sorted(search_root.glob(f"*/data/*/{DONE_MARKER}"))
    twin = next(
        (m.parent for m in markers if m.parent.resolve() != out_dir.resolve() and is_done(m.parent, settings)), None
    )
    if twin is None:
        return False
    log(f"data: copying the same data from {twin}")
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(twin, out_dir)  # copies, not links: a later spec change rewrites this folder in place
    return True


def share_identical_run(spec: TrainSpec, train_shards: Path, search_root: Path, log=print) -> bool:
    """Give ``spec`` the checkpoints of an identical finished run under ``search_root`` (unless it is trained
    already); True when one was shared, so that ``workflow.training_job`` finds it trained."""
    command = train_command(spec, train_shards)
    if is_trained(spec, command):
        return False
    twin = find_identical_run(spec, command, train_shards, search_root)
    if twin is None:
        return False
    log(f"{spec.name}: sharing the identical finished run {twin}")
    share_run(twin, spec, command)
    return True


def portable_record(record: dict[str, Any], run_dir: Path, train_shards: str | os.PathLike) -> dict[str, Any] | None:
    """A run record with its own folder and data path replaced by placeholders and the data's settings added, so
    that the same training in another experiment's folder compares equal (``None``: the data has no done marker)."""
    data_done = Path(train_shards).parent / DONE_MARKER
    if not data_done.exists():
        return None
    command = [arg.replace(str(run_dir), "<run>").replace(str(train_shards), "<train>") for arg in record["command"]]
    return {**record, "command": command, "data": json.loads(data_done.read_text())}


def _recorded_train_shards(record: dict[str, Any]) -> str | None:
    prefix = "--data.train_shards="
    return next((arg.removeprefix(prefix) for arg in record["command"] if arg.startswith(prefix)), None)


def find_identical_run(spec: TrainSpec, command: list[str], train_shards, search_root: Path) -> Path | None:
    """A finished run under ``<search_root>/*/runs/*/seed*`` (other experiments' work folders) that trained the
    same command, config files and data as ``spec``: the runner shares it instead of training again."""
    wanted = portable_record(run_record(spec, command), spec.out_dir, train_shards)
    if wanted is None:
        return None
    for recorded in sorted(search_root.glob("*/runs/*/seed*/command.json")):
        run_dir = recorded.parent
        if run_dir.resolve() == spec.out_dir.resolve() or not (run_dir / "final.ckpt").exists():
            continue
        try:
            record = json.loads(recorded.read_text())
            shards = _recorded_train_shards(record)
            if shards is not None and portable_record(record, run_dir, shards) == wanted:
                return run_dir
        except (OSError, ValueError, KeyError, TypeError):  # a half-written or foreign record: not a twin
            continue
    return None


def share_run(source: Path, spec: TrainSpec, command: list[str]) -> None:
    """Give ``spec`` the models of the identical finished run in ``source`` (hard links, a copy across file
    systems) and its own record, so that it counts as trained."""
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    mine = [checkpoint_path(spec), *(step_checkpoint_path(spec, step) for step in spec.checkpoint_steps)]
    for checkpoint in (source / path.name for path in mine):
        target = spec.out_dir / checkpoint.name
        target.unlink(missing_ok=True)
        if not checkpoint.exists():
            continue
        try:
            os.link(checkpoint, target)
        except OSError:
            shutil.copy2(checkpoint, target)
    (spec.out_dir / "shared_from.txt").write_text(f"{source}\n")
    (spec.out_dir / "command.json").write_text(json.dumps(run_record(spec, command)))
