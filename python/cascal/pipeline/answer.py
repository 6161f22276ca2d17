"""Answer every question of a dataset folder with every model of a pool.

Each model gets the question and its lettered options and is asked to reason, then finish with
``The answer is (X)``. The letter is extracted (:mod:`cascal.llm.extract`); a reply without a usable
letter is asked again (``RetryPolicy.reask_unparsable`` times, each re-ask cached separately) and then
recorded as unparsable (``?``). The mean token log-probability (NaN when the server sends none) and
the completion tokens (summed over re-asks) are recorded too.

A request that still fails after its retries (server errors, deadlines, unreadable replies) is no
answer at all: the cell is left *missing* (``NOT_ASKED``, an empty cell of predictions.csv), never
``?``, so an outage casts no vote and does not lower the model's consensus scores. Failed requests
are never cached; :class:`ModelStats` counts the missing cells per model, and a rerun asks exactly
those again (every reply received is served from the cache).

Every reply goes through the on-disk cache before it is used, so an interrupted run resumes where it
stopped without paying twice. Results are written into the folder: predictions.csv, logprobs.csv and
cost.csv gain (or replace) one column per pool model; other models' columns are kept.

A run holds the folder's lock (:func:`cascal.io.dataset_lock`, the file ``.cascal.lock``) from
before it reads the folder and opens the cache until its files are written: a second run on the
same folder stops at once with a :class:`~cascal.errors.DataError` naming the folder and the pid of
the run holding it, or, with ``wait=True`` (``cascal answer --wait``), waits for it and then finds
its replies in the cache. Before saving, the run reads the folder's answer files again and merges
its models' columns into them, so a column another writer added meanwhile is kept; every file is
replaced atomically under a unique temporary name.

The cache holds raw replies only; every run extracts the letters again, with the current extractor,
in a worker thread (one slow extraction never stalls the requests of the event loop). A run after an
extractor change (:data:`cascal.llm.extract.EXTRACTOR_VERSION`) therefore re-reads every cached reply
without a new request, and ``extra["extractor_version"]`` of the result says which extractor read them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, Optional, Sequence, TypeVar, Union

import numpy as np

from cascal.data import LETTERS, NO_ANSWER, NOT_ASKED, ResponseMatrix
from cascal.errors import DataError, InvalidParameterError
from cascal.io import dataset_lock, load_dataset, save_answers
from cascal.llm.cache import ResponseCache
from cascal.llm.client import ChatClient, EndpointError, RequestFailed
from cascal.llm.config import PoolConfig, RetryPolicy
from cascal.llm.extract import EXTRACTOR_VERSION, extract_answer

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

#: Default cache file name inside the dataset folder.
DEFAULT_CACHE_NAME = "answer_cache.sqlite"

PROMPT_TEMPLATE = (
    "The following is a multiple choice question. Think step by step, then finish your reply with "
    '"The answer is (X)" where X is the letter of the correct option.\n\n'
    "Question: {question}\n\nOptions:\n{options}\n\nAnswer: Let's think step by step."
)


def build_messages(question: str, options: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages asking a model to answer ``question`` with lettered ``options``.

    Raises:
        ValueError: an empty question, or fewer than 2 / more than 20 options.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidParameterError("question: must be a non-empty string")
    if not 2 <= len(options) <= len(LETTERS):
        raise InvalidParameterError(f"options: expected 2..{len(LETTERS)} options, got {len(options)}")
    lines = "\n".join(f"({LETTERS[i]}) {str(opt).strip()}" for i, opt in enumerate(options))
    return [{"role": "user", "content": PROMPT_TEMPLATE.format(question=question.strip(), options=lines)}]


@dataclass
class ModelStats:
    """What answering did for one model.

    Attributes:
        cached: replies served from the cache (re-asks count separately).
        requests_sent: HTTP requests sent, retries included.
        answered: questions with an extracted letter.
        unparsable: questions whose every reply (first ask and re-asks) named no usable letter.
        missing: questions left without an answer because a request (the first ask or a re-ask)
            got no usable reply after every retry (server errors, deadlines, unreadable replies);
            recorded as not asked, and asked again by the next run.
    """

    cached: int = 0
    requests_sent: int = 0
    answered: int = 0
    unparsable: int = 0
    missing: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Answer:
    option: int = NOT_ASKED
    logprob: float = math.nan
    tokens: float = math.nan
    reasons: list[str] = field(default_factory=list)


def answer_dataset(
    dataset_dir: PathLike,
    pool: PoolConfig,
    *,
    cache_path: Optional[PathLike] = None,
    progress: bool = True,
    models: Optional[Sequence[str]] = None,
    concurrency: Optional[int] = None,
    retry: Optional[RetryPolicy] = None,
    wait: bool = False,
) -> ResponseMatrix:
    """Have every pool model answer every question of ``dataset_dir``; write and return the result.

    Args:
        dataset_dir: a dataset folder (questions.jsonl, optionally earlier predictions).
        pool: the models (see :func:`cascal.llm.config.load_pool`).
        cache_path: the response cache (default: ``<dataset_dir>/answer_cache.sqlite``).
        progress: show a tqdm progress bar on stderr.
        models: only these pool models (names), in this order.
        concurrency: override every model's ``max_concurrency``.
        retry: override the pool's retry policy.
        wait: when another run holds the folder's lock, wait for it instead of refusing.

    Returns:
        The dataset with the pool models' columns; ``extra["answering"]`` holds per-model
        :class:`ModelStats` as dicts (``missing``: questions whose requests failed after every retry,
        left not asked), ``extra["extractor_version"]`` the extractor version that read the replies.

    Raises:
        cascal.errors.EndpointError: an endpoint was unreachable, kept rate-limiting or rejected
            the requests; nothing is written, every reply received so far is in the cache (the
            message says so and names the cache), so calling again resumes.
        cascal.errors.ConfigError: unknown model names, a missing API key variable.
        cascal.errors.InvalidParameterError: ``concurrency`` below 1.
        cascal.errors.DataError: a malformed dataset folder or an unusable cache file; another run
            is answering the folder (``wait`` false; the message names its pid); the folder's
            questions changed during the run.
    """
    folder = Path(dataset_dir)
    if models is not None:
        pool = pool.select(list(models))
    if concurrency is not None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidParameterError(f"concurrency: must be an integer >= 1, got {concurrency!r}")
        pool = pool.with_concurrency(concurrency)
    if retry is not None:
        pool = pool.with_retry(retry)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder")
    with dataset_lock(folder, wait=wait):
        return _answer_locked(folder, pool, cache_path, progress)


def _answer_locked(folder: Path, pool: PoolConfig, cache_path: Optional[PathLike], progress: bool) -> ResponseMatrix:
    """:func:`answer_dataset` once the folder's lock is held."""
    dataset = load_dataset(folder, embeddings=None)
    if dataset.questions is None or dataset.options is None:  # pragma: no cover - load_dataset always fills them
        raise DataError(f"{folder}: questions and options are required")
    prompts = [build_messages(q, o) for q, o in zip(dataset.questions, dataset.options)]
    cache = ResponseCache(cache_path if cache_path is not None else folder / DEFAULT_CACHE_NAME)
    try:
        answers, stats = _run_coroutine(lambda: _answer_all(pool, prompts, dataset.n_options, cache, progress))
    except EndpointError as exc:
        raise EndpointError(
            f"{exc}; nothing was written, every reply received so far is cached in {cache.path}: "
            "run the command again to resume",
            model_name=exc.model_name,
            base_url=exc.base_url,
        ) from exc
    finally:
        cache.close()
    # merge into the answer files as they are now, not as they were read: no column is dropped
    current = load_dataset(folder, embeddings=None)
    if np.asarray(current.question_ids).tolist() != np.asarray(dataset.question_ids).tolist():
        raise DataError(
            f"{folder}: questions.jsonl changed while it was being answered; nothing was written, every "
            f"reply is cached in {cache.path}: run the command again"
        )
    result = _merge(current, pool.names, answers)
    result.extra["answering"] = {name: s.as_dict() for name, s in stats.items()}
    result.extra["extractor_version"] = EXTRACTOR_VERSION
    save_answers(result, folder)  # questions.jsonl stays as written
    return result


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion, also when called from inside a running event loop (a notebook):
    then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascal-answer") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _answer_all(
    pool: PoolConfig,
    prompts: list[list[dict[str, str]]],
    n_options: np.ndarray,
    cache: ResponseCache,
    progress: bool,
) -> tuple[dict[str, list[_Answer]], dict[str, ModelStats]]:
    from tqdm.auto import tqdm

    clients = [ChatClient(m, pool.retry, cache=cache) for m in pool.models]
    results = {m.name: [_Answer() for _ in prompts] for m in pool.models}
    stats = {m.name: ModelStats() for m in pool.models}
    reask = pool.retry.reask_unparsable

    async def one(client: ChatClient, q: int) -> None:
        out = results[client.model.name][q]
        st = stats[client.model.name]
        tokens = 0.0
        any_tokens = False
        for variant in range(1 + reask):
            try:
                reply = await client.complete(prompts[q], variant=variant)
            except RequestFailed as exc:
                # no reply is no answer: missing (asked again next run), not a vote for "?"
                out.option, out.logprob, out.tokens = NOT_ASKED, math.nan, math.nan
                out.reasons.append(str(exc))
                st.missing += 1
                return
            st.cached += reply.cached
            if reply.completion_tokens is not None:
                tokens += reply.completion_tokens
                any_tokens = True
            # off the event loop: the other requests go on while a reply is read
            out.option = await asyncio.to_thread(extract_answer, reply.text, int(n_options[q]))
            out.logprob = reply.mean_logprob
            if out.option != NO_ANSWER:
                st.answered += 1
                break
        else:
            st.unparsable += 1
        out.tokens = tokens if any_tokens else math.nan

    tasks = [asyncio.ensure_future(one(c, q)) for c in clients for q in range(len(prompts))]
    bar = tqdm(total=len(tasks), desc="answering", unit="answer", disable=not progress, leave=False)
    try:
        for finished in asyncio.as_completed(tasks):
            await finished
            bar.update(1)
    except EndpointError:
        # one endpoint is gone: send nothing new, but let the requests in flight on the other
        # endpoints finish so that every reply already paid for reaches the cache
        for c in clients:
            c.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        bar.close()
        for c in clients:
            stats[c.model.name].requests_sent = c.requests_sent
            await c.aclose()
    return results, stats


def _merge(dataset: ResponseMatrix, names: list[str], answers: dict[str, list[_Answer]]) -> ResponseMatrix:
    """``dataset`` with the columns of ``names`` replaced or appended from ``answers``."""
    n_q = dataset.n_questions
    model_names = list(dataset.model_names) + [n for n in names if n not in dataset.model_names]
    n_m = len(model_names)
    codes = np.full((n_q, n_m), NOT_ASKED, dtype=np.int8)
    logprobs = np.full((n_q, n_m), np.nan, dtype=np.float32)
    cost = np.full((n_q, n_m), np.nan, dtype=np.float32)
    old = dataset.n_models
    codes[:, :old] = dataset.answers
    if dataset.logprobs is not None:
        logprobs[:, :old] = dataset.logprobs
    if dataset.cost is not None:
        cost[:, :old] = dataset.cost
    for name in names:
        col = model_names.index(name)
        column = answers[name]
        codes[:, col] = [a.option for a in column]
        logprobs[:, col] = [a.logprob for a in column]
        cost[:, col] = [a.tokens for a in column]
    return ResponseMatrix(
        answers=codes,
        n_options=dataset.n_options,
        subjects=dataset.subjects,
        model_names=model_names,
        gold=dataset.gold,
        logprobs=logprobs,
        cost=cost,
        question_ids=dataset.question_ids,
        questions=dataset.questions,
        options=dataset.options,
        extra=dict(dataset.extra),
    )


__all__ = ["DEFAULT_CACHE_NAME", "ModelStats", "PROMPT_TEMPLATE", "answer_dataset", "build_messages"]
