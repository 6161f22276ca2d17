"""Question generation for Routing with Generated Data (DESIGN §1, §6).

* :mod:`~cascal.generation.prompt`: the prompt asking a generator LLM for tagged question blocks;
* :mod:`~cascal.generation.parser`: the robust parser of those blocks, with a :class:`ParseReport`;
* :mod:`~cascal.generation.dedupe`: exact and near-duplicate removal;
* :mod:`~cascal.generation.generate`: :func:`generate_dataset`, the batched loop writing a dataset folder.
"""

from cascal.generation.generate import (
    GenerationError,
    GenerationReport,
    SubjectReport,
    agenerate_dataset,
    generate_dataset,
)
from cascal.generation.dedupe import DEFAULT_NEAR_THRESHOLD, DedupeReport, Deduplicator, deduplicate
from cascal.generation.parser import ParsedQuestion, ParseReport, parse_questions
from cascal.generation.prompt import build_messages

__all__ = [
    "GenerationError",
    "GenerationReport",
    "SubjectReport",
    "agenerate_dataset",
    "generate_dataset",
    "DEFAULT_NEAR_THRESHOLD",
    "DedupeReport",
    "Deduplicator",
    "deduplicate",
    "ParsedQuestion",
    "ParseReport",
    "parse_questions",
    "build_messages",
]
