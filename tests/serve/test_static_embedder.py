"""The static embedder end to end, with the real MiniLM weights: ``cascal embed`` → ``cascal train``
→ the same vectors and rankings in ``CascalRouter.route``, ``rank_question``, ``route-batch`` and
the gateway (uvicorn on 127.0.0.1); a router refuses an embedder whose files differ; the gateway's
answers to awkward inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import pool_file
from simulated_data import simulated_responses  # noqa: E402

from cascal.cli import main as cli_main
from cascal.embedding import StaticEmbedder
from cascal.encoders.files import sha256_file
from cascal.encoders.static import MANIFEST
from cascal.errors import EmbeddingError
from cascal.io import embeddings_path, save_dataset
from cascal.pipeline.route import rank_question
from cascal.router import CascalRouter


@pytest.fixture(scope="module")
def trained(world, static_embedder_dir, tmp_path_factory):
    """A dataset embedded by ``cascal embed --model static:DIR`` and the router ``cascal train`` fits on it."""
    folder = tmp_path_factory.mktemp("static_ds")
    data = simulated_responses(world, 2, 40)
    save_dataset(data, folder / "ds")
    name = f"static:{static_embedder_dir}"
    assert cli_main(["embed", str(folder / "ds"), "--model", name, "--no-progress"]) == 0
    router_file = folder / "router.cascal"
    assert cli_main(["train", str(folder / "ds"), "--out", str(router_file), "--random-state", "0"]) == 0
    return folder / "ds", router_file, list(data.questions or [])


def other_files_copy(source: Path, target: Path) -> Path:
    """A valid embedder folder whose files differ from ``source``'s (one setting changed, the
    manifest's hashes updated): it loads, but with another content hash."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text(encoding="utf-8"))
    config["note"] = "edited"
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"]["config.json"] = sha256_file(target / "config.json")
    (target / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return target


def test_every_path_embeds_and_ranks_identically(
    trained, static_embedder_dir, simulator, world, start_gateway, tmp_path
):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    dataset, router_file, texts = trained
    embedder = StaticEmbedder(static_embedder_dir)
    router = CascalRouter.load(router_file)
    assert router.embedding_model == embedder.name and router.embedding_sha256 == embedder.content_hash

    saved = np.load(embeddings_path(dataset, embedder.name))  # what `cascal embed` wrote
    assert np.array_equal(saved, embedder.encode(texts))

    queries = texts[:8] + ["a question about nothing in particular", "x" * 200_000]
    expected = router.route(embedder.encode(queries), top_k=len(router.model_names_))
    rankings = [expected.top_models(i) for i in range(len(queries))]
    assert [[m.name for m in rank_question(router, q)] for q in queries] == rankings

    pq.write_table(pa.table({"q": queries}), tmp_path / "log.parquet")
    out = tmp_path / "out.parquet"
    args = ["route-batch", str(tmp_path / "log.parquet"), "--router", str(router_file), "--out", str(out)]
    assert cli_main([*args, "--text-column", "q", "--batch-size", "4"]) == 0
    assert pq.read_table(out).column("ranking").to_pylist() == rankings

    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    gw = start_gateway(pool, router=router_file)
    reply = httpx.post(gw.url + "/v1/route", json={"input": queries}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert [d["models"] for d in reply.json()["data"]] == rankings
    assert httpx.get(gw.url + "/health", timeout=10).json()["embedder"] == embedder.name


def test_a_router_refuses_an_embedder_with_other_files(
    trained, static_embedder_dir, simulator, world, start_gateway, tmp_path
):
    _, router_file, texts = trained
    router = CascalRouter.load(router_file)
    other = other_files_copy(static_embedder_dir, tmp_path / "other")
    moved = shutil.copytree(static_embedder_dir, tmp_path / "moved")  # same files elsewhere: accepted
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    both = rf"static:{other}.*files sha256 [0-9a-f]{{64}}.*differs from the router's embedder 'static:{static_embedder_dir}'"
    with pytest.raises(EmbeddingError, match=both):
        start_gateway(pool, router=router_file, embedder=f"static:{other}")
    with pytest.raises(EmbeddingError, match="differs from the router's embedder"):
        rank_question(router, texts[0], embedder=StaticEmbedder(other))
    assert [m.name for m in rank_question(router, texts[0], embedder=f"static:{moved}")] == [
        m.name for m in rank_question(router, texts[0])
    ]
    # the embedder folder rebuilt in place with other files: the router's own name now loads them, refused
    rebuilt_router = tmp_path / "router-copy.cascal"
    shutil.copy(router_file, rebuilt_router)
    original = {p.name: p.read_bytes() for p in static_embedder_dir.iterdir() if p.is_file()}
    try:
        other_files_copy(static_embedder_dir, tmp_path / "staging")
        for name in ("config.json", MANIFEST):
            (static_embedder_dir / name).write_bytes((tmp_path / "staging" / name).read_bytes())
        assert cli_main(["route", str(rebuilt_router), "What is 2 + 2?"]) == 2
    finally:
        for name, data in original.items():
            (static_embedder_dir / name).write_bytes(data)


def test_gateway_answers_awkward_inputs_and_keeps_routing(trained, simulator, world, start_gateway, tmp_path):
    _, router_file, texts = trained
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    gw = start_gateway(pool, router=router_file, max_route_inputs=10_000)
    route = gw.url + "/v1/route"
    many = [f"question {i} about {texts[i % len(texts)][:40]}" for i in range(10_000)]
    reply = httpx.post(route, json={"input": many}, timeout=120)
    assert reply.status_code == 200 and len(reply.json()["data"]) == 10_000
    for body in ({"input": ""}, {"input": ["ok", ""]}):
        assert httpx.post(route, json=body, timeout=30).status_code == 400
    surrogate = b'{"input": "bad \\udc00 text"}'
    reply = httpx.post(route, content=surrogate, headers={"content-type": "application/json"}, timeout=30)
    assert reply.status_code == 400 and "surrogate" in reply.text
    reply = httpx.post(route, json={"input": "\x00\x01\x02\x07"}, timeout=30)
    assert reply.status_code == 200 and len(reply.json()["models"]) == len(world.model_names)
    reply = httpx.post(route, json={"input": "y" * (2 << 20)}, timeout=30)
    assert reply.status_code == 413  # beyond max_body_bytes
    reply = httpx.post(route, json={"input": "z " * 400_000}, timeout=30)  # just under 1 MiB: routed
    assert reply.status_code == 200
    assert httpx.post(route, json={"input": texts[0]}, timeout=30).status_code == 200  # nothing stays blocked
