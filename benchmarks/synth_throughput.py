"""Throughput of the synthetic world on one core: generation (scene + edit + flaws + PNG encoding) and oracle
scoring, in samples per second.

    python benchmarks/synth_throughput.py [--num 500] [--resolution 32]
"""

from __future__ import annotations

import argparse
import os
import time

from mredit.schema import encode_sample
from mredit.synth.generate import PNG_COMPRESS_LEVEL, generate_samples
from mredit.synth.oracle import OracleJudge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy work here is small arrays anyway
    list(generate_samples(5, resolution=args.resolution, seed=99))  # warm caches and imports

    start = time.process_time()
    samples = [s for s in generate_samples(args.num, "train", args.resolution, corrupt_rate=0.5, seed=0)]
    encoded = [encode_sample(s, compress_level=PNG_COMPRESS_LEVEL) for s in samples]  # as the shard writer
    generate_s = time.process_time() - start

    start = time.process_time()
    rendered_only = list(generate_samples(args.num, "train", args.resolution, corrupt_rate=0.5, seed=1))
    render_s = time.process_time() - start

    oracle = OracleJudge(resolution=args.resolution)
    start = time.process_time()
    for sample in samples:
        oracle.score(sample.source, sample.instruction, sample.target, sample.meta)
    oracle_cold_s = time.process_time() - start  # first sight of each scene: renders its answer
    start = time.process_time()
    for sample in samples:
        oracle.score(sample.source, sample.instruction, sample.target, sample.meta)
    oracle_warm_s = time.process_time() - start  # cached answer, as when scoring several models' outputs

    png_kib = sum(len(v) for e in encoded for k, v in e.items() if k.endswith("png")) / len(encoded) / 1024
    print(f"synth throughput at {args.resolution} px, {args.num} samples, CPU time of one core")
    print(f"  generation (render + edit + flaws + PNG encode): {args.num / generate_s:8.0f} samples/s")
    print(f"  generation without encoding:                     {len(rendered_only) / render_s:8.0f} samples/s")
    print(f"  oracle scoring, new scenes:                      {args.num / oracle_cold_s:8.0f} samples/s")
    print(f"  oracle scoring, cached scenes:                   {args.num / oracle_warm_s:8.0f} samples/s")
    print(f"  PNG bytes per sample (source + target):          {png_kib:8.2f} KiB")


if __name__ == "__main__":
    main()
