"""``cascal demo --serve``: the trained router behind the ``cascal serve`` gateway on the simulated pool.

After the demo trained its routers, this starts the simulator again (same world, 127.0.0.1), the
gateway in a thread in front of it, and sends a few test questions through the real ``openai``
client with ``model="cascal"``, printing which pool model answered what; then one
``cascal-vote-3`` request. Needs the optional extra ``cascal[serve]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union, cast

__all__ = ["serve_demo"]


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
    return records
