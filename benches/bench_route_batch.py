"""Offline routing of a large Parquet log: ``cascal route-batch`` single process, then ``--engine ray``.

Writes a synthetic log (``--rows`` rows of 384-d float32 embeddings around 200 subject centres, in
``--files`` files), fits a router on synthetic answers of 20 models (200 subjects), then times both
engines as separate ``cascal route-batch`` processes (wall time and peak RSS, ``VmHWM``, of
the child; the Ray engine's workers run in other processes, so its RSS is the driver's only) and
checks that the two outputs are equal row for row::

    python benches/bench_route_batch.py --rows 1000000 --workdir /tmp/route_batch_bench
    python benches/bench_route_batch.py --rows 100000 --repeats 1          # a quick look

The reported numbers are the medians of ``--repeats`` runs of each engine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM, SUBJECTS, MODELS = 384, 200, 20


def make_router(path: Path, n_train: int = 20_000, seed: int = 0) -> np.ndarray:
    """Fit CASCAL on synthetic answers (per-subject skills) and save it; the subject centres."""
    from cascal.data import ResponseMatrix
    from cascal.router import CascalRouter

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((SUBJECTS, DIM)).astype(np.float32)
    subject = rng.integers(0, SUBJECTS, n_train)
    X = centres[subject] + 0.8 * rng.standard_normal((n_train, DIM), dtype=np.float32)
    skill = rng.uniform(0.25, 0.95, (SUBJECTS, MODELS))
    gold = rng.integers(0, 4, n_train)
    right = rng.random((n_train, MODELS)) < skill[subject]
    wrong = (gold[:, None] + rng.integers(1, 4, (n_train, MODELS))) % 4
    responses = ResponseMatrix(
        answers=np.where(right, gold[:, None], wrong).astype(np.int8),
        n_options=np.full(n_train, 4),
        subjects=np.array([f"s{i:03d}" for i in subject]),
        model_names=[f"model-{j:02d}" for j in range(MODELS)],
        gold=gold.astype(np.int8),
    )
    CascalRouter(embedding_model=f"hashing-{DIM}", random_state=0).fit(X, responses).save(path)
    return centres


def write_log(folder: Path, centres: np.ndarray, rows: int, files: int, seed: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_file = -(-rows // files)
    for f in range(files):
        start, stop = f * per_file, min((f + 1) * per_file, rows)
        writer = None
        for s in range(start, stop, 65_536):
            m = min(65_536, stop - s)
            X = centres[rng.integers(0, SUBJECTS, m)] + 0.8 * rng.standard_normal((m, DIM), dtype=np.float32)
            table = pa.table(
                {"id": np.arange(s, s + m), "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), DIM)}
            )
            writer = writer or pq.ParquetWriter(folder / f"part-{f:03d}.parquet", table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()


# peak RSS from VmHWM (this process's own high-water mark): getrusage's ru_maxrss would also count
# the parent's memory at fork time, which Linux carries across exec
CHILD = """
import json, re, sys, time
from cascal.cli import main
t = time.perf_counter()
status = main(sys.argv[1:])
seconds = time.perf_counter() - t
with open("/proc/self/status") as f:
    hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
print(json.dumps({"status": status, "seconds": seconds, "rss_mib": hwm / 1024}))
"""


def run_engine(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("route_batch_bench"))
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    router, log = work / "router.cascal", work / f"log_{args.rows}"
    t = time.perf_counter()
    centres = make_router(router)
    print(f"router fitted on 20000 x {MODELS} ({SUBJECTS} subjects) in {time.perf_counter() - t:.1f} s")
    if not log.exists():
        write_log(log, centres, args.rows, args.files)
    size = sum(f.stat().st_size for f in log.glob("*.parquet")) / 2**20
    print(f"log: {args.rows} rows in {args.files} files, {size:.0f} MiB")
    common = [
        "route-batch",
        str(log),
        "--router",
        str(router),
        "--id-column",
        "id",
        "--batch-size",
        str(args.batch_size),
    ]
    results = {}
    engines = ["local"] if args.skip_ray else ["local", "ray"]
    for engine in engines:
        runs = [
            run_engine(common + ["--out", str(work / f"out_{engine}.parquet"), "--engine", engine, "--no-progress"])
            for _ in range(args.repeats)
        ]
        seconds = statistics.median(r["seconds"] for r in runs)
        rss = statistics.median(r["rss_mib"] for r in runs)
        results[engine] = (seconds, rss)
        print(
            f"{engine:>5}: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s, peak RSS {rss:.0f} MiB (median of {len(runs)})"
        )
    if "ray" in results:
        import pyarrow.parquet as pq

        a, b = pq.read_table(work / "out_local.parquet"), pq.read_table(work / "out_ray.parquet")
        same = a.equals(b)
        ranking_same = a.column("ranking").equals(b.column("ranking"))
        print(f"ray vs local: {a.num_rows} rows, rankings identical: {ranking_same}, whole tables identical: {same}")
        print(f"ray overhead: {results['ray'][0] / results['local'][0]:.2f}x the single-process time")
    print(
        f"cpu count: {os.cpu_count()}, peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
