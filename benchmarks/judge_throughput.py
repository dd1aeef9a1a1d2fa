"""Judge throughput against the local OpenAI-compatible server (tests/helpers/fake_server.py) with 50 ms latency.

The bound at concurrency C and latency L is C / L requests/s (32 / 0.05 s = 640/s); the goal is >= 80% of it,
i.e. the client's per-request work (image encoding, JSON, the SDK) must not be the bottleneck. Two figures:
``judge``: OpenAIJudge.judge on prepared requests; ``annotate``: the whole command path (shards -> records, fsync
grouped every 0.5 s). The server runs in its own process so it does not share the client's interpreter. On a
loaded machine both figures drop with the CPU share: re-run on a quiet one.

    .venv/bin/python benchmarks/judge_throughput.py [--requests 2000] [--concurrency 32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.judge.annotate import annotate
from mredit.judge.base import JudgeRequest
from mredit.judge.openai_judge import OpenAIJudge
from mredit.schema import EditSample

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"


def _image(rng: random.Random, size: int) -> Image.Image:
    return Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))


async def judge_throughput(judge: OpenAIJudge, requests: list[JudgeRequest], concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(request: JudgeRequest) -> str:
        async with slots:
            return (await judge.judge(request)).status

    await judge.judge(requests[0])  # warm the connection pool
    started = time.perf_counter()
    statuses = await asyncio.gather(*(one(r) for r in requests))
    elapsed = time.perf_counter() - started
    await judge.aclose()
    if set(statuses) != {"ok"}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")
    return len(requests) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--image-size", type=int, default=16)
    args = parser.parse_args()

    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests/helpers/fake_server.py"),
            "--latency",
            str(args.latency),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.stdout.readline().split()[1])
        base_url = f"http://127.0.0.1:{port}/v1"
        rng = random.Random(0)
        pairs = [(_image(rng, args.image_size), _image(rng, args.image_size)) for _ in range(64)]
        requests = [
            JudgeRequest(f"r{i}", *pairs[i % 64][:1], f"make object {i} red", pairs[i % 64][1])
            for i in range(args.requests)
        ]
        bound = args.concurrency / args.latency
        judge = OpenAIJudge(base_url=base_url, api_key=API_KEY, provider="compatible", model="bench")
        rate = asyncio.run(judge_throughput(judge, requests, args.concurrency))
        print(
            f"judge:    {rate:7.1f} requests/s  ({rate / bound:.0%} of the {bound:.0f}/s bound, "
            f"concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms, {args.requests} requests)"
        )

        with tempfile.TemporaryDirectory() as tmp:
            with ShardSetWriter(Path(tmp) / "shards", shard_size=1000) as writer:
                for i, request in enumerate(requests):
                    writer.write(EditSample(f"s{i:06d}", request.source, request.edited, request.instruction))
            judge = OpenAIJudge(base_url=base_url, api_key=API_KEY, provider="compatible", model="bench")
            summary = annotate([str(Path(tmp) / "shards")], Path(tmp) / "out", judge, args.concurrency)
            rate = summary["inputs"] / summary["seconds"]
            print(
                f"annotate: {rate:7.1f} samples/s   ({rate / bound:.0%} of the bound; shards -> JSONL records, "
                f"fsync every 0.5 s; statuses {summary['final']})"
            )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
