"""Router and pool files for the reload tests: a second router that differs from the session one,
routers damaged in ways the file check refuses, and installing a file the way an operator's
deployment does (written beside, then renamed over the served path)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
from conftest import N_SUBJECTS, PER_SUBJECT
from simulated_data import simulated_responses

from cascal.embedding import load_embedder
from cascal.router import CascalRouter
from cascal.simulate import SimWorld

#: the model router B does not know, which pool P5 lacks
EXTRA = "sim-model-6"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def install(source: Path, target: Path) -> None:
    """Copy ``source`` over ``target`` atomically (a reader sees the old file or the new one)."""
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def train_second_router(world: SimWorld, path: Path) -> Path:
    """Router B: fitted on five of the six simulated models (without :data:`EXTRA`), another seed."""
    data = simulated_responses(world, N_SUBJECTS, PER_SUBJECT)
    data = data.select_models([m for m in world.model_names if m != EXTRA])
    X = np.asarray(load_embedder("hashing-256").encode(list(data.questions or [])), dtype=np.float32)
    CascalRouter(embedding_model="hashing-256", random_state=1, k_nearest=2).fit(X, data).save(path)
    return path


def nan_router(router_file: Path, path: Path) -> Path:
    """The router of ``router_file`` with a NaN in its subject representatives (refused on load)."""
    router = CascalRouter.load(router_file)
    reps = np.array(router.tables_.subject_reps)
    reps[0, 0] = np.nan
    router.tables_ = dataclasses.replace(router.tables_, subject_reps=reps)
    router.save(path)
    return path


def truncated_router(router_file: Path, path: Path) -> Path:
    data = Path(router_file).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def other_embedder_router(router_file: Path, path: Path) -> Path:
    router = CascalRouter.load(router_file)
    router.embedding_model = "hashing-128"
    router.save(path)
    return path


@lru_cache(maxsize=None)
def offline_ranking(router_path: str, dropped: tuple, text: str) -> tuple:
    """The whole ranking ``router_path``'s router (without ``dropped``) gives ``text`` in process."""
    router = _loaded(router_path)
    if dropped:
        router = router.without_models(list(dropped))
    x = load_embedder(router.embedding_model).encode([text])
    return tuple(router.route(x, top_k=len(router.model_names_)).top_models(0))


@lru_cache(maxsize=None)
def _loaded(path: str) -> CascalRouter:
    return CascalRouter.load(path)
