"""``cascal demo --serve``: the trained router behind the ``cascal serve`` gateway on the simulated pool.

After the demo trained its routers, this starts the simulator again (same world, 127.0.0.1), the
gateway in a thread in front of it, and sends a few test questions through the real ``openai``
client with ``model="cascal"``, printing which pool model answered what; then one
``cascal-vote-3`` request. Needs the optional extra ``cascal[serve]``.

Then :func:`add_model_demo` adds a model to the pool of a running gateway: the gateway starts
without the pool model that is best on the most test subjects (its router is the demo's, without
that model), the model is added to pool.yaml and the gateway reloaded (served by name, not routed
to yet), then the router that knows it is installed and reloaded, and the share of test questions
routed first to it is printed per subject, before and after, beside its accuracy there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union, cast

__all__ = ["add_model_demo", "serve_demo"]


def serve_demo(
    out_dir: Union[str, Path], *, seed: int = 0, generator: str = "weak", n_questions: int = 4
) -> list[dict]:
    """Route ``n_questions`` test questions of a finished demo through the gateway.

    Args:
        out_dir: the demo's output folder (its ``test`` dataset and ``router_<generator>_raw.cascal``).
        seed: the simulated world's seed (as given to the demo).
        generator: whose router to serve.
        n_questions: questions to send.

    Returns:
        One record per request: question, routed top 3, answering model, extracted answer letter.
    """
    import numpy as np
    import openai

    from cascal.data import LETTERS
    from cascal.io import load_dataset
    from cascal.llm.extract import extract_answer
    from cascal.pipeline.answer import build_messages
    from cascal.serve.server import GatewayThread, build_gateway
    from cascal.serve.settings import GatewaySettings
    from cascal.simulate import SimWorld, serve_simulator, simulator_pool

    out = Path(out_dir)
    test = load_dataset(out / "test", embeddings=None)
    world = SimWorld(seed=seed)
    records = []
    with serve_simulator(world) as simulator:
        gateway = build_gateway(
            out / f"router_{generator}_raw.cascal", simulator_pool(simulator.base_url, world), GatewaySettings(port=0)
        )
        with GatewayThread(gateway) as thread:
            print(f"[demo] gateway on {thread.base_url} in front of the SIMULATED pool (model 'cascal')", flush=True)
            client = openai.OpenAI(base_url=thread.base_url, api_key="EMPTY", max_retries=0)
            picks = np.linspace(0, test.n_questions - 1, n_questions).astype(int)
            for i in picks:
                question, options = (test.questions or [])[i], (test.options or [])[i]
                raw = client.chat.completions.with_raw_response.create(
                    model="cascal", messages=cast(Any, build_messages(question, options))
                )
                reply = raw.parse()
                text = reply.choices[0].message.content or ""
                choice = extract_answer(text, len(options))
                record = {
                    "question": question,
                    "route": json.loads(raw.headers["x-cascal-route"]),
                    "model": reply.model,
                    "answer": LETTERS[choice] if choice >= 0 else None,
                    "key": LETTERS[int(test.gold[i])] if test.gold is not None and test.gold[i] >= 0 else None,
                }
                records.append(record)
                print(
                    f"[demo]   {reply.model:<14} answered {record['answer'] or '?'} (key {record['key'] or '?'}) "
                    f"route {record['route']}: {question[:70]}",
                    flush=True,
                )
            question, options = (test.questions or [])[picks[0]], (test.options or [])[picks[0]]
            voted = client.chat.completions.create(
                model="cascal-vote-3", messages=cast(Any, build_messages(question, options))
            )
            vote = (voted.model_extra or {}).get("cascal", {}).get("vote", {})
            letters = ", ".join(f"{v['model']}={v['answer']}" for v in vote.get("votes", []))
            print(f"[demo]   cascal-vote-3: {vote.get('answer')} ({letters})", flush=True)
    add_model_demo(out, seed=seed, generator=generator)
    return records


def add_model_demo(out_dir: Union[str, Path], *, seed: int = 0, generator: str = "weak") -> dict:
    """Add a model to a running gateway's pool by two reloads and show traffic moving to it.

    The demo's router (trained on every simulated model's answers) stands for the refit
    (``cascal answer`` + ``cascal train``) of the add-a-model loop of docs/operations.md.

    Returns:
        ``model`` (the model added) and, per subject, its share of first choices before and after
        and its accuracy on the test questions (``subjects``).
    """
    import secrets
    import shutil

    import httpx
    import numpy as np

    from cascal.io import load_dataset
    from cascal.router import CascalRouter
    from cascal.serve.server import GatewayThread, build_gateway
    from cascal.serve.settings import GatewaySettings
    from cascal.simulate import SimWorld, serve_simulator
    from cascal.simulate.server import pool_yaml

    out = Path(out_dir)
    test = load_dataset(out / "test", embeddings=None)
    if test.gold is None:  # the demo's simulated test set always carries its key
        return {}
    world = SimWorld(seed=seed)
    subjects = np.asarray(test.subjects) if test.subjects is not None else np.zeros(test.n_questions, dtype=str)
    names = list(test.model_names)
    correct = np.asarray(test.answers) == np.asarray(test.gold)[:, None]
    accuracy = {s: correct[subjects == s].mean(axis=0) for s in sorted(set(subjects.tolist()))}
    best_in = [names[int(np.argmax(acc))] for acc in accuracy.values()]
    added = max(names, key=lambda n: (best_in.count(n), -names.index(n)))
    folder = out / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    full = out / f"router_{generator}_raw.cascal"
    served_router, served_pool = folder / "router.cascal", folder / "pool.yaml"
    key = secrets.token_urlsafe(16)
    texts = list(test.questions or [])
    with serve_simulator(world) as simulator:
        CascalRouter.load(full).without_models([added]).save(served_router)
        kept = [n for n in world.model_names if n != added]
        served_pool.write_text(pool_yaml(simulator.base_url, world, models=kept), encoding="utf-8")
        gateway = build_gateway(served_router, served_pool, GatewaySettings(port=0, api_key=key))
        with (
            GatewayThread(gateway) as thread,
            httpx.Client(base_url=thread.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        ):
            print(f"[demo] adding {added} to the pool while the gateway runs (reload: POST /admin/reload)", flush=True)
            before = _first_choices(http, texts)
            served_pool.write_text(pool_yaml(simulator.base_url, world), encoding="utf-8")
            grown = _reload(http)
            print(
                f"[demo]   pool.yaml + {added}, same router: reload {grown['router_sha256'][:12]}; "
                f"{added} is served by name, not routed to yet",
                flush=True,
            )
            shutil.copyfile(full, served_router.with_name("router.cascal.partial"))
            served_router.with_name("router.cascal.partial").replace(served_router)
            refit = _reload(http)
            print(
                f"[demo]   the router refit with {added}'s answers: reload {refit['router_sha256'][:12]}; "
                f"routed over {len(refit['router']['models'])} models",
                flush=True,
            )
            after = _first_choices(http, texts)
    print(f"[demo]   share of test questions routed first to {added}, by subject (its accuracy there):", flush=True)
    rows = {}
    for subject, acc in accuracy.items():
        mask = subjects == subject
        share_before = float(np.mean([m == added for m in np.asarray(before)[mask]]))
        share_after = float(np.mean([m == added for m in np.asarray(after)[mask]]))
        mine, best_other = float(acc[names.index(added)]), float(np.delete(acc, names.index(added)).max())
        rows[subject] = {"before": share_before, "after": share_after, "accuracy": mine, "best_other": best_other}
        print(
            f"[demo]     {subject:<24} {share_before:4.0%} -> {share_after:4.0%}   "
            f"(accuracy {mine:.2f}; best other model {best_other:.2f})",
            flush=True,
        )
    return {"model": added, "subjects": rows}


def _reload(http: Any) -> dict:
    response = http.post("/admin/reload")
    if response.status_code != 200:
        from cascal.serve.errors import GatewayError

        raise GatewayError(f"the demo's reload failed: {response.text}")
    return cast(dict, response.json())


def _first_choices(http: Any, texts: list) -> list:
    """The first-ranked model of each text, routed by ``/v1/route`` in slices."""
    first = []
    for start in range(0, len(texts), 500):
        response = http.post("/v1/route", json={"input": texts[start : start + 500]})
        response.raise_for_status()
        first += [item["models"][0] for item in response.json()["data"]]
    return first
