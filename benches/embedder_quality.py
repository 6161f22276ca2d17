"""Routing quality with each embedder: CascalRouter on the MMLU-Pro pools, 5 seeds, top-1 and top-3.

The same question texts are embedded by every embedder given; the split, pools and router are those
of ``cascal evaluate`` (:func:`cascal.evaluation.run_evaluation`, router ``cascal``). The shared
sentence-transformers MiniLM embeddings of the folder are the reference row (``minilm``)::

    python benches/embedder_quality.py --data "$CASCAL_DATA" \\
        --embedder static:/tmp/emb256 --embedder hashing-256 --out quality.json

Prints a Markdown table (mean ± std over the seeds, in accuracy points) and writes the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="MMLU-Pro outputs folder (CASCAL_DATA)")
    parser.add_argument("--reference", default="all-MiniLM-L6-v2", help="embeddings file of the folder to compare with")
    parser.add_argument("--embedder", action="append", default=[], help="embedder name (repeat)")
    parser.add_argument("--pools", default="large,small,all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from cascal.embedding import embed_texts, get_embedder
    from cascal.evaluation import run_evaluation
    from cascal.io import load_dataset

    base = load_dataset(args.data, embeddings=args.reference, out_of_range="unparsable")
    texts = list(base.questions or [])
    variants = {"minilm": base}
    seconds = {}
    for name in args.embedder:
        embedder = get_embedder(name)
        start = time.perf_counter()
        vectors = embed_texts(embedder, texts, batch_size=256)
        seconds[name] = time.perf_counter() - start
        variants[name] = dataclasses.replace(base, embeddings=vectors, embedding_model=embedder.name)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label, data in variants.items():
        result = run_evaluation(
            data,
            pools=args.pools.split(","),
            keys=["real"],
            seeds=args.seeds,
            routers=["cascal"],
            progress=False,
            plots=False,
        )
        for pool, res in result["pools"].items():
            runs = [r for r in res["runs"] if r["router"] == "cascal"]
            top1 = np.array([r["top1"] for r in runs]) * 100
            top3 = np.array([r["top3"] for r in runs]) * 100
            table.setdefault(pool, {})[label] = {
                "top1": float(top1.mean()),
                "top1_std": float(top1.std()),
                "top3": float(top3.mean()),
                "top3_std": float(top3.std()),
                "seeds": len(runs),
            }
        print(f"done {label}", flush=True)
    lines = ["| pool | embedder | top-1 | top-3 | Δ top-1 vs MiniLM | Δ top-3 vs MiniLM |", "|---|---|---|---|---|---|"]
    for pool, rows in table.items():
        ref = rows["minilm"]
        for label, row in rows.items():
            lines.append(
                f"| {pool} | {label} | {row['top1']:.2f} ± {row['top1_std']:.2f} | {row['top3']:.2f} ± {row['top3_std']:.2f} "
                f"| {row['top1'] - ref['top1']:+.2f} | {row['top3'] - ref['top3']:+.2f} |"
            )
    print("\n".join(lines))
    if args.out is not None:
        args.out.write_text(json.dumps({"table": table, "embed_seconds": seconds}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
