"""The ``openai:MODEL@BASE_URL`` embedder against a local OpenAI-compatible ``/v1/embeddings``
endpoint (a tiny Starlette app on 127.0.0.1 serving the hashing embedder), through ``cascal embed``
and the gateway."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import pool_file, train_router
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cascal.cli import main as cli_main
from cascal.data import ResponseMatrix
from cascal.embedding import EmbeddingError, HashingEmbedder, OpenAIEmbeddingsEmbedder, get_embedder, load_embedder
from cascal.io import embeddings_path, save_dataset
from cascal.router import CascalRouter

TEXTS = ["Which enzyme unwinds DNA?", "What is the pH of pure water?", "Name the powerhouse of the cell."]


def embeddings_app(calls: list) -> Starlette:
    """``POST /v1/embeddings`` answering with ``HashingEmbedder(64)`` vectors, in reverse order
    (clients must sort by ``index``)."""
    embedder = HashingEmbedder(64)

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        calls.append((body["model"], len(texts), request.headers.get("authorization")))
        vectors = embedder.encode(texts) * 3.0  # not unit norm: the client normalises
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        return JSONResponse(
            {
                "object": "list",
                "model": body["model"],
                "data": data[::-1],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, list]]:
    calls: list = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(embeddings_app(calls), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", calls
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_endpoint_embedder_reproduces_the_served_vectors(endpoint, monkeypatch):
    url, calls = endpoint
    monkeypatch.setenv("CASCAL_EMBEDDINGS_API_KEY", "embed-key-7")
    embedder = load_embedder(f"openai:hash-64@{url}/", batch_size=2)
    assert embedder.name == f"openai:hash-64@{url}" and isinstance(embedder, OpenAIEmbeddingsEmbedder)
    vectors = embedder.encode(TEXTS)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.allclose(vectors, HashingEmbedder(64).encode(TEXTS), atol=1e-6)
    assert [c[1] for c in calls[-2:]] == [2, 1] and calls[-1][2] == "Bearer embed-key-7"
    assert get_embedder(f"openai:hash-64@{url}").name == embedder.name
    for bad in ("openai:", "openai:m@ftp://x", "openai:m"):
        with pytest.raises(EmbeddingError):
            load_embedder(bad)
    with pytest.raises(EmbeddingError, match="request failed"):
        OpenAIEmbeddingsEmbedder("hash-64", url.replace("/v1", "/nowhere")).encode(TEXTS)


def test_cascal_embed_uses_the_endpoint(endpoint, tmp_path):
    url, _ = endpoint
    data = ResponseMatrix(
        answers=np.zeros((3, 2), dtype=np.int8),
        n_options=np.array([4, 4, 4]),
        subjects=np.array(["a", "a", "b"]),
        model_names=["m1", "m2"],
        questions=list(TEXTS),
        options=[["w", "x", "y", "z"]] * 3,
        question_ids=np.array(["q0", "q1", "q2"]),
    )
    save_dataset(data, tmp_path / "ds")
    name = f"openai:hash-64@{url}"
    assert cli_main(["embed", str(tmp_path / "ds"), "--model", name, "--no-progress"]) == 0
    saved = np.load(embeddings_path(tmp_path / "ds", name))
    assert np.allclose(saved, HashingEmbedder(64).encode(TEXTS), atol=1e-6)


def test_gateway_routes_with_the_endpoint_embedder(endpoint, world, simulator, start_gateway, questions, tmp_path):
    url, _ = endpoint
    name = f"openai:hash-64@{url}"
    router_file = train_router(world, tmp_path / "router.cascal", embedder=name)
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    with pytest.raises(EmbeddingError, match="differs"):
        start_gateway(pool, router=router_file, embedder="hashing-64")
    gw = start_gateway(pool, router=router_file)
    router = CascalRouter.load(router_file)
    texts = [q.question for q in questions[:6]]
    expected = router.route(HashingEmbedder(64).encode(texts), top_k=len(router.model_names_))
    answer = httpx.post(gw.url + "/v1/route", json={"input": texts}, timeout=20).json()
    assert [d["models"] for d in answer["data"]] == [expected.top_models(i) for i in range(len(texts))]
    assert httpx.get(gw.url + "/health").json()["embedder"] == name
