"""Parts of question generation: the prompt, the parser of generated blocks and de-duplication
(the generation stage itself is :mod:`cascal.pipeline.generate`).

* :mod:`~cascal.generation.prompt`: the prompt asking a generator LLM for tagged question blocks;
* :mod:`~cascal.generation.parser`: the robust parser of those blocks, with a :class:`ParseReport`;
* :mod:`~cascal.generation.dedupe`: exact and near-duplicate removal;
"""

from cascal.generation.dedupe import DEFAULT_NEAR_THRESHOLD, DedupeReport, Deduplicator, deduplicate
from cascal.generation.parser import ParsedQuestion, ParseReport, parse_questions
from cascal.generation.prompt import build_messages

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "DedupeReport",
    "Deduplicator",
    "deduplicate",
    "ParsedQuestion",
    "ParseReport",
    "parse_questions",
    "build_messages",
]
