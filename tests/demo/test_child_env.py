"""The environment of the demo's and experiments' subprocesses (``mredit.lab.jobs.child_env``)."""

from __future__ import annotations

from mredit.lab.jobs import REUSE_FREED_MEMORY, child_env


def test_children_run_one_thread_and_keep_freed_memory_for_reuse(monkeypatch):
    for name in REUSE_FREED_MEMORY:
        monkeypatch.delenv(name, raising=False)
    env = child_env()
    assert env["OMP_NUM_THREADS"] == "1"
    assert {name: env[name] for name in REUSE_FREED_MEMORY} == REUSE_FREED_MEMORY
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) == 32 * 1024 * 1024  # glibc refuses larger values silently


def test_a_malloc_setting_of_the_caller_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert child_env()["MALLOC_TRIM_THRESHOLD_"] == "131072"
