"""The response matrix: what every pool model answered on every question.

A :class:`ResponseMatrix` is the one data structure routers, baselines and the evaluation harness
share. It is validated on construction so that downstream code can trust shapes and codes.

Answer codes: ``0..n_options-1`` is the chosen option (0 = A), :data:`NO_ANSWER` (-1) means the model
answered but no letter could be extracted, :data:`NOT_ASKED` (-2) means the model was not run on the
question.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from cascal.errors import DataError, NoUsableAnswerWarning

NO_ANSWER = -1
NOT_ASKED = -2
MAX_OPTIONS = 20
LETTERS = "ABCDEFGHIJKLMNOPQRST"
#: Entries of :attr:`ResponseMatrix.extra` that hold one item per question (lists in row order):
#: :meth:`ResponseMatrix.subset` keeps them aligned with the rows. ``question_fields`` are the fields
#: of questions.jsonl beyond the core ones, ``question_records`` the records as read
#: (:mod:`cascal.io`).
PER_QUESTION_EXTRA = ("question_fields", "question_records")


@dataclass
class ResponseMatrix:
    """Answers of ``n_m`` models on ``n_q`` multiple-choice questions.

    Attributes:
        answers: ``(n_q, n_m)`` int8 option index, -1 unparsable, -2 not asked.
        n_options: ``(n_q,)`` int8 number of options of each question (2..20).
        subjects: ``(n_q,)`` str array, the task or category of each question.
        model_names: the ``n_m`` model names, in column order.
        gold: ``(n_q,)`` int8 gold (or generator key) option, -1 where unknown. ``None`` = all unknown.
        logprobs: ``(n_q, n_m)`` float32 mean token log-probability, NaN where unknown, or ``None``.
        cost: ``(n_q, n_m)`` float32 price or length of each response, or ``None``.
        question_ids: ``(n_q,)`` identifiers (defaults to ``0..n_q-1``).
        questions: optional question texts.
        options: optional per-question option texts.
        embeddings: optional ``(n_q, d)`` float32 question embeddings.
        embedding_model: name of the model that produced ``embeddings``, if known.
        extra: free-form metadata; the entries named in :data:`PER_QUESTION_EXTRA` are lists with one
            item per question.
    """

    answers: np.ndarray
    n_options: np.ndarray
    subjects: np.ndarray
    model_names: list[str]
    gold: Optional[np.ndarray] = None
    logprobs: Optional[np.ndarray] = None
    cost: Optional[np.ndarray] = None
    question_ids: Optional[np.ndarray] = None
    questions: Optional[list[str]] = None
    options: Optional[list[list[str]]] = None
    embeddings: Optional[np.ndarray] = None
    embedding_model: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        answers = np.asarray(self.answers)
        if answers.ndim != 2:
            raise DataError(f"answers: expected a 2-D (n_questions, n_models) array, got shape {answers.shape}")
        if answers.dtype.kind not in "iu":
            raise DataError(f"answers: expected integer option codes, got dtype {answers.dtype}")
        n_q, n_m = answers.shape
        if answers.size and (answers.min() < NOT_ASKED or answers.max() >= MAX_OPTIONS):
            raise DataError(
                f"answers: codes must lie in [-2, {MAX_OPTIONS - 1}], found [{answers.min()}, {answers.max()}]"
            )
        self.answers = answers.astype(np.int8, copy=False)

        n_options = np.asarray(self.n_options)
        if n_options.shape != (n_q,):
            raise DataError(f"n_options: expected shape ({n_q},), got {n_options.shape}")
        if n_q and (n_options.min() < 2 or n_options.max() > MAX_OPTIONS):
            raise DataError(
                f"n_options: every question needs 2..{MAX_OPTIONS} options, found [{n_options.min()}, {n_options.max()}]"
            )
        self.n_options = n_options.astype(np.int8, copy=False)
        if n_q and n_m:
            over = self.answers >= self.n_options[:, None]
            if over.any():
                q, m = np.argwhere(over)[0]
                raise DataError(
                    f"answers: question {q} has {self.n_options[q]} options but model {m} chose option {self.answers[q, m]}"
                )

        subjects = np.asarray(self.subjects)
        if subjects.shape != (n_q,):
            raise DataError(f"subjects: expected shape ({n_q},), got {subjects.shape}")
        self.subjects = subjects.astype(str)

        self.model_names = [str(m) for m in self.model_names]
        if len(self.model_names) != n_m:
            raise DataError(f"model_names: expected {n_m} names, got {len(self.model_names)}")
        if len(set(self.model_names)) != n_m:
            raise DataError("model_names: names must be unique")

        if self.gold is None:
            self.gold = np.full(n_q, NO_ANSWER, dtype=np.int8)
        gold = np.asarray(self.gold)
        if gold.shape != (n_q,):
            raise DataError(f"gold: expected shape ({n_q},), got {gold.shape}")
        if n_q and ((gold < -1).any() or (gold >= self.n_options).any()):
            raise DataError("gold: every entry must be -1 (unknown) or an option index below the question's n_options")
        self.gold = gold.astype(np.int8, copy=False)

        for name in ("logprobs", "cost"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=np.float32)
            if arr.shape != (n_q, n_m):
                raise DataError(f"{name}: expected shape ({n_q}, {n_m}), got {arr.shape}")
            setattr(self, name, arr)

        if self.question_ids is None:
            self.question_ids = np.arange(n_q)
        self.question_ids = np.asarray(self.question_ids)
        if self.question_ids.shape != (n_q,):
            raise DataError(f"question_ids: expected shape ({n_q},), got {self.question_ids.shape}")
        if self.questions is not None and len(self.questions) != n_q:
            raise DataError(f"questions: expected {n_q} texts, got {len(self.questions)}")
        if self.options is not None and len(self.options) != n_q:
            raise DataError(f"options: expected {n_q} option lists, got {len(self.options)}")
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n_q:
                raise DataError(f"embeddings: expected shape ({n_q}, d), got {emb.shape}")
            self.embeddings = emb

    # ------------------------------------------------------------------ shape
    @property
    def n_questions(self) -> int:
        return int(self.answers.shape[0])

    @property
    def n_models(self) -> int:
        return int(self.answers.shape[1])

    def __len__(self) -> int:
        return self.n_questions

    # ------------------------------------------------------------------ views
    def subset(self, rows: Sequence[int] | np.ndarray) -> "ResponseMatrix":
        """The questions at ``rows`` (indices or a boolean mask), all models."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        pick_list = lambda a: None if a is None else [a[i] for i in idx]  # noqa: E731
        return replace(
            self,
            answers=self.answers[idx],
            n_options=self.n_options[idx],
            subjects=self.subjects[idx],
            gold=pick(self.gold),
            logprobs=pick(self.logprobs),
            cost=pick(self.cost),
            question_ids=pick(self.question_ids),
            questions=pick_list(self.questions),
            options=pick_list(self.options),
            embeddings=pick(self.embeddings),
            extra=self._subset_extra(idx),
        )

    def _subset_extra(self, idx: np.ndarray) -> dict:
        """``extra`` with its per-question lists (:data:`PER_QUESTION_EXTRA`) cut to the rows ``idx``."""
        out = dict(self.extra)
        for key in PER_QUESTION_EXTRA:
            value = out.get(key)
            if isinstance(value, list) and len(value) == self.n_questions:
                out[key] = [value[i] for i in idx]
        return out

    def select_models(self, names: Sequence[str]) -> "ResponseMatrix":
        """The columns of the named models, in the given order."""
        missing = [n for n in names if n not in self.model_names]
        if missing:
            raise DataError(f"select_models: unknown model(s) {missing}; known: {self.model_names}")
        cols = [self.model_names.index(n) for n in names]
        pick = lambda a: None if a is None else a[:, cols]  # noqa: E731
        return replace(
            self,
            answers=self.answers[:, cols],
            logprobs=pick(self.logprobs),
            cost=pick(self.cost),
            model_names=list(names),
            extra=dict(self.extra),
        )

    def with_gold(self, gold: np.ndarray) -> "ResponseMatrix":
        """A copy whose answer key is ``gold`` (e.g. a simulated generator's key)."""
        return replace(self, gold=np.asarray(gold), extra=dict(self.extra))

    def models_without_answers(self) -> list[str]:
        """Names of the models with no usable answer: every entry of their column is unparsable (-1)
        or not asked (-2), as with a ``predictions.csv`` column of only ``?`` and empty cells.

        Such a model agrees with nobody, so consensus scores it 0 on every question and a router
        trained on it ranks it last (with every model in this list, routing is uniform).
        """
        usable = np.count_nonzero(self.answers >= 0, axis=0) > 0
        return [name for name, ok in zip(self.model_names, usable.tolist()) if not ok]

    def warn_models_without_answers(self, where: str, stacklevel: int = 2) -> None:
        """Warn (:class:`~cascal.errors.NoUsableAnswerWarning`, a ``UserWarning``; message starting with ``where: ``) naming the models of
        :meth:`models_without_answers`, or saying that routing is uniform when no model has a
        usable answer; nothing when every model has one. ``stacklevel`` as for ``warnings.warn``,
        counted from the caller of this method."""
        silent = self.models_without_answers()
        if not silent:
            return
        if len(silent) == self.n_models:
            message = (
                f"{where}: no model has a usable answer (every answer is unparsable or not asked: '?' or empty "
                "in predictions.csv): every consensus score is 0 and the router routes uniformly"
            )
        else:
            shown = ", ".join(silent[:10]) + (f" and {len(silent) - 10} more" if len(silent) > 10 else "")
            message = (
                f"{where}: {len(silent)} of {self.n_models} models have no usable answer (every answer is "
                f"unparsable or not asked: '?' or empty in predictions.csv): {shown}; they score 0 on every "
                "question, so the router ranks them last"
            )
        warnings.warn(message, NoUsableAnswerWarning, stacklevel=stacklevel + 1)

    def correctness(self) -> np.ndarray:
        """``(n_q, n_m)`` float array: 1 where the answer equals ``gold``, 0 where it differs or is
        unparsable, NaN where the model was not asked or the key is unknown."""
        if self.gold is None:
            raise DataError("responses: no answer key (gold) to score the answers against")
        out = (self.answers == self.gold[:, None]).astype(np.float64)
        out[self.answers == NOT_ASKED] = np.nan
        out[self.gold < 0, :] = np.nan
        return out
