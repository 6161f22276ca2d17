"""The label-budget grid behind docs/labelling.md#what-labels-pay, with every candidate router's test
top-1 (so the choice rule of :mod:`cascal.router.label_choice` can be read candidate by candidate).

Same protocol as ``cascal evaluate --labels`` (:mod:`cascal.evaluation.label_budget`): per pool and
seed the harness' 60/40 split, one label-free fit on the training answers, labels drawn from the
training split only (``random``: 3 seeded draws; ``active``: ``suggest_labels``, one draw), top-1 on
the test gold.

    python benches/label_choice_grid.py run --pools "large;small" --out grid.json
    python benches/label_choice_grid.py run --pools "all;lone-strong;frontier-like:4" --out more.json
    python benches/label_choice_grid.py table grid.json [more.json ...] [--z 1.5 --untrusted-default best-on-labels]

``$CASCAL_DATA`` is the MMLU-Pro answer folder. ``--lone-draws D`` keeps the ``lone-strong`` pools of
draws ``0..D-1`` (4 strong models x D crowds).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from cascal.data import NO_ANSWER, ResponseMatrix
from cascal.evaluation.harness import embeddings_of, gold_of, load_evaluation_data
from cascal.evaluation.label_budget import draw_labels, models_by_labels
from cascal.evaluation.metrics import model_accuracy
from cascal.evaluation.protocol import expand_pools, make_split
from cascal.router import CascalRouter
from cascal.router import label_choice as lc


def _columns(worlds: list) -> list:
    """Columns of each named pool (expand_pools again, cheap)."""
    out = []
    for name, data in worlds:
        if name.startswith("frontier-like"):
            out.append(None)
        else:
            out.append(dict(expand_pools([_spec(name)], data))[name])
    return out


def _spec(name: str) -> str:
    return "lone-strong" if name.startswith("lone-strong/") else name


def run(args: argparse.Namespace) -> None:
    specs = args.pools.split(";")
    worlds = []
    real = [spec for spec in specs if not spec.startswith("frontier-like")]
    if real:
        data, _ = load_evaluation_data(os.environ["CASCAL_DATA"], "unparsable")
        worlds += [
            (name, data)
            for name, _ in expand_pools(real, data)
            if not name.startswith("lone-strong/") or int(name.rsplit("/", 1)[1]) < args.lone_draws
        ]
    for spec in specs:
        if spec.startswith("frontier-like"):
            # synthetic sets: one answer set per world seed, its whole pool
            worlds += [(f"frontier-like/{w}", frontier_like(w)) for w in range(int(spec.split(":")[1]))]
    pools = [
        (name, list(world.model_names) if name.startswith("frontier-like") else cols, world)
        for (name, world), cols in zip(worlds, _columns(worlds))
    ]
    budgets = [int(b) for b in args.budgets.split(",")]
    runs, start = [], time.time()
    for name, cols, data in pools:
        for seed in range(args.seeds):
            split = make_split(data, cols, seed)
            train, test = split.train, split.test
            blank = train.with_gold(np.full(train.n_questions, NO_ANSWER, dtype=np.int8))
            X, Xt, gold = embeddings_of(train), embeddings_of(test), gold_of(test)
            router = CascalRouter(random_state=seed).fit(X, blank)
            base = router.label_base(X, blank)

            def top1(
                tables: tuple[np.ndarray, np.ndarray],
                router: CascalRouter = router,
                Xt: np.ndarray = Xt,
                test: ResponseMatrix = test,
                gold: np.ndarray = gold,
            ) -> float:
                r = copy.copy(router)
                r.tables_ = replace(router.tables_, centroid_scores=tables[0], global_scores=tables[1])
                first = r.route(Xt, top_k=1).ranked[:, 0]
                return float((test.answers[np.arange(len(first)), first] == gold).mean())

            free = top1((base.centroid_scores, base.global_scores))
            best_gold = float(model_accuracy(test.answers, gold).max())
            for strategy in args.strategies.split(","):
                for n in budgets:
                    for draw in range(3 if strategy == "random" else 1):
                        if strategy == "random":
                            y = draw_labels(train, n, np.random.default_rng((seed, n, draw)))
                        else:
                            y = np.full(train.n_questions, NO_ANSWER, dtype=np.int64)
                            rows = router.suggest_labels(X, blank, n)
                            y[rows] = gold_of(train)[rows]
                        chosen = lc.choose(base, y, trusted=bool(router.diagnostics_.trustworthy))
                        single = int(models_by_labels(train, y)[0])  # the harness' best single
                        runs.append(
                            dict(
                                pool=name,
                                seed=seed,
                                strategy=strategy,
                                n=n,
                                draw=draw,
                                free=free,
                                single=float((test.answers[:, single] == gold).mean()),
                                best_gold=best_gold,
                                test={k: top1(v) for k, v in chosen.tables.items()},
                                cv=chosen.choice.scores,
                                se=chosen.choice.standard_errors,
                                pair_se={f"{a}|{b}": e for (a, b), e in chosen.choice.pair_errors.items()},
                                chosen=chosen.choice.chosen,
                                trusted=bool(router.diagnostics_.trustworthy),
                            )
                        )
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump(runs, f)


def frontier_like(seed: int, n_subjects: int = 6, per_subject: int = 300):
    """A synthetic answer set shaped like the issue's frontier pools (not tuned on): one model right
    85 % of the time, six crowd models right 77-81 % whose errors share a trap (on 30 % of the
    questions each falls, with probability 0.6, for the same wrong option). 10 options; subjects are
    blobs in 16-d. Returns a ResponseMatrix with gold and embeddings."""
    rng = np.random.default_rng(seed)
    n, k = n_subjects * per_subject, 10
    centres = np.linalg.qr(rng.normal(size=(16, n_subjects)))[0].T
    emb = np.vstack([c + 0.1 * rng.normal(size=(per_subject, 16)) for c in centres]).astype(np.float32)
    gold = rng.integers(0, k, size=n)
    trap_answer = (gold + rng.integers(1, k, size=n)) % k
    trap = rng.random(n) < 0.3
    targets = [0.85, 0.81, 0.80, 0.79, 0.78, 0.78, 0.77]
    answers = np.empty((n, len(targets)), dtype=np.int64)
    for m, acc in enumerate(targets):
        wrong = (gold + rng.integers(1, k, size=n)) % k
        if m == 0:
            answers[:, m] = np.where(rng.random(n) < acc, gold, wrong)
            continue
        fooled = trap & (rng.random(n) < 0.6)
        right = ~fooled & (rng.random(n) < acc / (1 - 0.3 * 0.6))
        answers[:, m] = np.where(fooled, trap_answer, np.where(right, gold, wrong))
    return ResponseMatrix(
        answers=answers,
        n_options=np.full(n, k),
        subjects=np.repeat([f"s{i}" for i in range(n_subjects)], per_subject),
        model_names=["strong", *(f"crowd{i}" for i in range(1, len(targets)))],
        gold=gold,
        embeddings=emb,
    )


def pick(run: dict, rule: argparse.Namespace) -> str:
    """The candidate :func:`cascal.router.label_choice.decide` takes under ``rule`` (its ``z``,
    ``z_untrusted``, ``untrusted_default``) from the recorded held-out scores and errors."""
    if not run["cv"]:
        return "label-free"
    pair = {tuple(k.split("|")): v for k, v in run.get("pair_se", {}).items()}
    chosen, _ = lc.decide(
        run["cv"],
        run["se"],
        pair,
        0,
        trusted=run["trusted"],
        z=rule.z,
        z_untrusted=rule.z_untrusted,
        untrusted_default=rule.untrusted_default,
    )
    return chosen


def family(pool: str) -> str:
    if pool.startswith("lone-strong/"):
        return "lone-strong"
    if pool.startswith("frontier-like/"):
        return "frontier-like"
    if pool.startswith("random:"):
        return "random:K:SEED"
    return pool


def table(args: argparse.Namespace) -> None:
    runs = [r for path in args.files for r in json.load(open(path))]
    if args.trust:
        with open(args.trust) as f:
            trust = json.load(f)
        for r in runs:
            r.setdefault("trusted", trust[f"{r['pool']}|{r['seed']}"])
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(family(r["pool"]), r["strategy"], r["n"])].append(r)
    print(
        "| pools | labels drawn | labels | runs | CASCAL + labels | label-free | best on labels | vs the better (pts) "
        "| regret (pts) | chosen |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
        rs = groups[key]
        chosen = [pick(r, args) for r in rs]
        got = 100 * np.mean([r["test"][c] for r, c in zip(rs, chosen)])
        free = 100 * np.mean([r["free"] for r in rs])
        single = 100 * np.mean([r["single"] for r in rs])
        regret = 100 * np.mean([r["best_gold"] for r in rs]) - got
        counts = ", ".join(f"{c} {k}" for c, k in Counter(chosen).most_common())
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {got:.1f} | {free:.1f} | {single:.1f} | "
            f"{got - max(free, single):+.1f} | {regret:.1f} | {counts} |"
        )


def _gap(rs: list[dict], rule: argparse.Namespace) -> float:
    """Mean "vs the better" (points) of runs ``rs`` under ``rule``."""
    got = np.mean([r["test"][pick(r, rule)] for r in rs])
    return 100 * (got - max(np.mean([r["free"] for r in rs]), np.mean([r["single"] for r in rs])))


def sweep(args: argparse.Namespace) -> None:
    """The trade-off of the margin on trusted fits: for each margin, the worst "vs the better" cell
    (family x strategy x budget, trusted runs only) of the design pools ``large``/``small`` and of
    the held-out trusted pools (``frontier-like``, the trusted ``random:K:SEED`` pools)."""
    runs = [r for path in args.files for r in json.load(open(path)) if r["trusted"]]
    groups: dict[tuple[str, str, str, int], list[dict]] = defaultdict(list)
    for r in runs:
        side = "design" if r["pool"] in ("large", "small") else "held-out"
        groups[(side, family(r["pool"]), r["strategy"], r["n"])].append(r)
    print("| margin (SE) | worst on large/small (pts) | cell | worst on frontier-like / trusted random (pts) | cell |")
    print("|---|---|---|---|---|")
    for z in np.arange(0.0, args.max_z + 1e-9, args.step):
        rule = argparse.Namespace(z=z, z_untrusted=0.0, untrusted_default="label-free")
        worst = {}
        for side in ("design", "held-out"):
            cells = {k: _gap(v, rule) for k, v in groups.items() if k[0] == side}
            key = min(cells, key=cells.get)
            worst[side] = (cells[key], f"{key[1]} {key[2]} {key[3]}")
        d, h = worst["design"], worst["held-out"]
        print(f"| {z:.2f} | {d[0]:+.1f} | {d[1]} | {h[0]:+.1f} | {h[1]} |")


def power(args: argparse.Namespace) -> None:
    """On trusted fits: the hidden edge (the best single model on the test gold minus label-free),
    ``best-on-labels`` minus label-free on the test split and on the held-out labels, the standard
    error of that held-out difference (root mean square over the runs), and the label count at which
    the hidden edge would equal ``z`` standard errors (the error scales as 1/sqrt(L))."""
    runs = [r for path in args.files for r in json.load(open(path)) if r["trusted"] and r["cv"]]
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for r in runs:
        # random pools one by one: their hidden edges differ
        groups[(r["pool"] if r["pool"].startswith("random:") else family(r["pool"]), r["strategy"], r["n"])].append(r)
    print(
        "| pools (trusted fits) | labels drawn | labels | runs | hidden edge (pts) | best on labels - label-free, test "
        f"(pts) | the same, held-out (pts) | SE (pts) | hidden edge / SE | labels for hidden edge = {args.z:g} SE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        rs = groups[key]
        hidden = 100 * np.mean([r["best_gold"] - r["free"] for r in rs])
        edge = 100 * np.mean([r["test"]["best-on-labels"] - r["free"] for r in rs])
        diff = 100 * np.mean([r["cv"]["best-on-labels"] - r["cv"]["label-free"] for r in rs])
        se = 100 * float(np.sqrt(np.mean([r["se"]["best-on-labels"] ** 2 for r in rs])))
        need = key[2] * (args.z * se / hidden) ** 2 if hidden > 0 else float("inf")
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {hidden:+.1f} | {edge:+.1f} | {diff:+.1f} | {se:.1f} | "
            f"{hidden / se if se else float('inf'):.2f} | {need:,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--pools", required=True, help="';'-separated pool specs (cascal evaluate --pool)")
    r.add_argument("--out", required=True)
    r.add_argument("--budgets", default="10,20,50,100,200")
    r.add_argument("--strategies", default="random,active")
    r.add_argument("--seeds", type=int, default=5)
    r.add_argument("--lone-draws", type=int, default=6)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    t.add_argument("--z", type=float, default=lc.SWITCH_Z, help="margin in standard errors (default: the code's)")
    t.add_argument("--z-untrusted", type=float, default=lc.UNTRUSTED_Z, help="the same where the fit is not trusted")
    t.add_argument(
        "--untrusted-default",
        default=lc.UNTRUSTED_DEFAULT,
        choices=lc.CANDIDATES,
        help="the candidate kept on untrusted fits unless another beats it (default: the code's)",
    )
    t.add_argument("--trust", help="JSON {'pool|seed': trusted} for runs recorded without it")
    w = sub.add_parser("sweep")
    w.add_argument("files", nargs="+")
    w.add_argument("--max-z", type=float, default=3.0)
    w.add_argument("--step", type=float, default=0.25)
    p = sub.add_parser("power")
    p.add_argument("files", nargs="+")
    p.add_argument("--z", type=float, default=lc.SWITCH_Z)
    args = parser.parse_args()
    {"run": run, "table": table, "sweep": sweep, "power": power}[args.command](args)


if __name__ == "__main__":
    main()
