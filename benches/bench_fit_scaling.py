"""Scaling of ``CascalRouter.fit`` with the number of training questions: time and peak RSS.

For every point (synthetic data of :mod:`cascal.bench.cases.fit`: 384-d unit embeddings, 20 models,
4 options) one subprocess writes the data to a scratch folder, and a fresh subprocess loads it the
way ``cascal train`` does (embeddings memory-mapped) and fits ``repeats`` times: the median fit time
and the process's peak RSS (input included) are recorded. Writes a JSON file and a PNG plot::

    python benches/bench_fit_scaling.py --out docs/fit_scaling        # docs/fit_scaling.{json,png}
    python benches/bench_fit_scaling.py --points 10000:50 100000:50   # a subset

Run it on a quiet machine (``uptime``): the fit uses every core.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_POINTS = ("10000:50", "100000:50", "1000000:50", "1000000:200")


def write_data(n: int, n_subjects: int, folder: Path) -> None:
    from cascal.bench.cases.fit import make_fit_input

    data = make_fit_input(n, n_subjects)
    r = data.responses
    np.save(folder / "embeddings.npy", data.embeddings)
    np.savez(
        folder / "responses.npz", answers=r.answers, n_options=r.n_options, subjects=r.subjects, logprobs=r.logprobs
    )


def fit_point(folder: Path, repeats: int) -> dict:
    from cascal.data import ResponseMatrix
    from cascal.router import CascalRouter

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    z = np.load(folder / "responses.npz")
    responses = ResponseMatrix(
        answers=z["answers"],
        n_options=z["n_options"],
        subjects=z["subjects"],
        model_names=[f"m{j:02d}" for j in range(z["answers"].shape[1])],
        logprobs=z["logprobs"],
    )
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        router = CascalRouter(random_state=0).fit(emb, responses)
        times.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "fit_s": statistics.median(times),
        "fit_times": times,
        "peak_rss_mb": peak_kb / 1024,
        "input_mb": emb.nbytes / 2**20,
        "n_centroids": int(router.centroids_.shape[0]),
    }


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for s in sorted({r["n_subjects"] for r in rows}):
        pts = sorted((r for r in rows if r["n_subjects"] == s), key=lambda r: r["n"])
        n = [r["n"] for r in pts]
        ax_t.plot(n, [r["fit_s"] for r in pts], "o-", label=f"{s} subjects")
        ax_m.plot(n, [r["peak_rss_mb"] / 1024 for r in pts], "o-", label=f"{s} subjects, peak RSS")
    inputs = sorted({(r["n"], r["input_mb"]) for r in rows})
    ax_m.plot([n for n, _ in inputs], [mb / 1024 for _, mb in inputs], "k--", label="input (float32 embeddings)")
    for ax, title, unit in ((ax_t, "fit time (median)", "seconds"), (ax_m, "peak RSS of the fitting process", "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training questions (20 models, 384-d)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="*", default=list(DEFAULT_POINTS), help="n:subjects pairs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="fit_scaling", help="output path without extension (.json, .png)")
    parser.add_argument("--_write", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_fit", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._write:
        write_data(int(args._write[0]), int(args._write[1]), Path(args._write[2]))
        return
    if args._fit:
        print(json.dumps(fit_point(Path(args._fit[0]), int(args._fit[1]))))
        return
    rows = []
    for point in args.points:
        n, s = (int(v) for v in point.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, __file__, "--_write", str(n), str(s), tmp], check=True)
            out = subprocess.run(
                [sys.executable, __file__, "--_fit", tmp, str(args.repeats)], check=True, capture_output=True, text=True
            )
        row = {"n": n, "n_subjects": s, **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(
            f"n={n:>9,} S={s:>4}: fit {row['fit_s']:.2f} s (median of {args.repeats}), "
            f"peak RSS {row['peak_rss_mb']:.0f} MB (input {row['input_mb']:.0f} MB), {row['n_centroids']} niches",
            flush=True,
        )
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
