"""Hostile pool.yaml / tasks.yaml / prices files: every refused file is a ConfigError naming the file
(and line or field), never another exception, and reading stays fast and small whatever the file.

The YAML reading itself is :mod:`cascal.yaml_files` (one path for every config file); the value
bounds are the schemas' (docs/algorithm.md#config-file-limits)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascal import yaml_files
from cascal.errors import ConfigError
from cascal.llm.config import load_pool, load_tasks
from cascal.router.costs import load_prices

MODEL = "  - name: m\n    model: x\n    base_url: http://h/v1\n"
POOL = "models:\n" + MODEL
TASKS = "subjects:\n  law: US constitutional law\n"
PRICES = "models:\n  m: {price_input_per_mtok: 1, price_output_per_mtok: 2}\n"

LOADERS: dict[str, Callable[[Path], Any]] = {
    "pool.yaml": load_pool,
    "tasks.yaml": load_tasks,
    "prices.yaml": load_prices,
}
GOOD = {"pool.yaml": POOL, "tasks.yaml": TASKS, "prices.yaml": PRICES}
HUGE = "9" * 400  # an integer no float holds


@pytest.fixture(params=["libyaml", "python"])
def parser(request, monkeypatch):
    """Both event parsers the reader may run on: libyaml's, and PyYAML's pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(yaml_files, "_PlainLoader", yaml_files._loader_class(yaml_files._PythonEvents))
    elif yaml_files._event_parser() is yaml_files._PythonEvents:
        pytest.skip("PyYAML without libyaml")
    return request.param


def label(tmp_path: Path, name: str) -> str:
    """How messages name the file: pool and tasks files by name, a prices file by its path."""
    return str(tmp_path / name) if name == "prices.yaml" else name


def load(tmp_path: Path, name: str, text: str) -> Any:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return LOADERS[name](path)


def refused(tmp_path: Path, name: str, text: str, seconds: float = 2.0) -> str:
    """The ConfigError message of loading ``text`` as ``name`` (within ``seconds``)."""
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load(tmp_path, name, text)
    assert time.perf_counter() - start < seconds
    return str(info.value)


@pytest.mark.parametrize("name", list(LOADERS))
def test_the_good_files_load(tmp_path, name):
    assert load(tmp_path, name, GOOD[name]) is not None


# ----------------------------------------------------------------------------- size, nesting, scalars
@pytest.mark.parametrize("name", list(LOADERS))
def test_a_file_over_one_mib_is_refused_before_parsing(tmp_path, name):
    # a valid file padded with comments: before, it was parsed whole (about a second per MiB,
    # 50 MB took minutes and over a GB); now the first 1 MiB + 1 byte decide
    text = GOOD[name] + ("# padding padding padding padding padding padding padding\n" * 40_000)
    assert len(text) > 2**21
    message = refused(tmp_path, name, text, seconds=0.5)
    assert message.startswith(f"{label(tmp_path, name)}: file larger than 1048576 bytes (1 MiB)"), message
    assert load(tmp_path, name, GOOD[name] + "#" * (2**20 - len(GOOD[name]) - 1) + "\n") is not None  # exactly 1 MiB


@pytest.mark.parametrize("name", list(LOADERS))
def test_deep_nesting_is_refused_with_its_line(tmp_path, parser, name):
    # before: RecursionError from the parser
    text = GOOD[name] + "deep:\n  " + "[" * 100 + "]" * 100 + "\n"
    message = refused(tmp_path, name, text)
    line = GOOD[name].count("\n") + 2
    assert message.startswith(f"{label(tmp_path, name)}:{line}: nested deeper than 32 levels"), message
    # far deeper: libyaml stops at its own limit (1000), the pure-Python parser at ours
    message = refused(tmp_path, name, GOOD[name] + "deep:\n  " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested deeper than 32 levels" in message or "exceeded maximum nesting depth" in message, message


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-30",  # a date that does not exist: ValueError before
        "!!int abc",  # ValueError before
        "!!float abc",
        "!!bool maybe",  # KeyError before
        "!!timestamp abc",  # TypeError before
        "9" * 5000,  # more digits than int() converts: ValueError before
    ],
)
@pytest.mark.parametrize("name", list(LOADERS))
def test_scalars_their_tag_cannot_hold_are_refused_with_their_line(tmp_path, parser, name, value):
    text = GOOD[name] + f"note: {value}\n"
    message = refused(tmp_path, name, text)
    line = text.count("\n")
    assert message.startswith(f"{label(tmp_path, name)}: not valid YAML: line {line}, column 7: cannot read "), message
    assert len(message) < 400


@pytest.mark.parametrize("name", list(LOADERS))
def test_anchors_and_aliases_are_refused_in_every_config_file(tmp_path, parser, name):
    bomb = (
        "["
        + ", ".join(
            ["&l0 [" + ", ".join(["1"] * 9) + "]"]
            + [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
        )
        + "]"
    )
    message = refused(tmp_path, name, GOOD[name] + f"note: {bomb}\n", seconds=1.0)
    line = GOOD[name].count("\n") + 1
    assert message.startswith(
        f"{label(tmp_path, name)}:{line}: YAML anchors and aliases are not supported, found anchor &l0"
    ), message


@pytest.mark.parametrize("name", list(LOADERS))
def test_bytes_that_are_not_utf8_are_refused_with_their_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(GOOD[name].encode() + b"note: \xff\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(label(tmp_path, name))}:{GOOD[name].count(chr(10)) + 1}: not UTF-8 text"
    ):
        LOADERS[name](path)


def test_a_directory_or_a_missing_file_is_a_config_error(tmp_path):
    for loader in LOADERS.values():
        with pytest.raises(ConfigError):
            loader(tmp_path)
        with pytest.raises(ConfigError):
            loader(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- numeric fields
# every numeric field of pool.yaml and tasks.yaml: (file text with {v} for the value, field path)
POOL_FIELDS = [
    *[
        (f"retry:\n  {f}: {{v}}\n" + POOL, f"retry.{f}")
        for f in ("max_attempts", "base_delay", "max_delay", "jitter", "max_retry_after", "reask_unparsable")
    ],
    *[
        (POOL + f"    {f}: {{v}}\n", f"models[0].{f}")
        for f in (
            "max_concurrency",
            "timeout",
            "request_deadline",
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "price_input_per_mtok",
            "price_output_per_mtok",
        )
    ],
    ("defaults:\n  timeout: {v}\n" + POOL, "models[0].timeout"),
]
TASKS_FIELDS = [
    ("questions_per_subject: {v}\n" + TASKS, "questions_per_subject"),
    ("subjects:\n  law: {description: x, questions: {v}}\n", "subjects.law.questions"),
    ("generator:\n  name: g\n  model: x\n  base_url: http://h/v1\n  max_tokens: {v}\n" + TASKS, "generator.max_tokens"),
]
NOT_NUMBERS = [HUGE, "-" + HUGE, "'5'", '"0.5"', "true", "false", ".nan", ".inf", "-.inf", "[1]", "{a: 1}"]


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize(
    "name, text, field", [("pool.yaml", t, f) for t, f in POOL_FIELDS] + [("tasks.yaml", t, f) for t, f in TASKS_FIELDS]
)
def test_every_numeric_field_refuses_what_is_not_a_number_in_its_range(tmp_path, name, text, field, value):
    # before: a 400-digit integer passed every field without an upper bound (and then overflowed
    # where it was used: PoolConfig.prices(), the retry backoff, the request timeouts)
    message = refused(tmp_path, name, text.replace("{v}", value))
    assert message.startswith(f"{name}: {field}: must "), message
    assert len(message) < 300  # the 400 digits are abbreviated


@pytest.mark.parametrize(
    "field, largest, too_large",
    [
        ("max_attempts", "1000", "1001"),
        ("reask_unparsable", "1000", "1001"),
        ("base_delay", "1000000", "1000000.5"),
        ("max_delay", "1000000", "1.0e+7"),
        ("max_retry_after", "1000000", "1.0e+300"),
    ],
)
def test_retry_fields_have_documented_upper_bounds(tmp_path, field, largest, too_large):
    retry = load(tmp_path, "pool.yaml", f"retry:\n  {field}: {largest}\n" + POOL).retry
    assert getattr(retry, field) == yaml.safe_load(largest)
    message = refused(tmp_path, "pool.yaml", f"retry:\n  {field}: {too_large}\n" + POOL)
    assert message.startswith(f"pool.yaml: retry.{field}: must be ")


@pytest.mark.parametrize(
    "field, largest, too_large",
    [
        ("max_concurrency", "100000", "100001"),
        ("timeout", "1000000", "1000001"),
        ("request_deadline", "1000000", "1.0e+308"),
        ("max_tokens", "1000000000", "1000000001"),
        ("seed", str(2**63 - 1), str(2**63)),
        ("seed", str(-(2**63)), str(-(2**63) - 1)),
        ("price_input_per_mtok", "1000000", "1.0e+308"),
        ("price_output_per_mtok", "1.0e+6", "1000000.001"),
    ],
)
def test_model_fields_have_documented_upper_bounds(tmp_path, field, largest, too_large):
    pool = load(tmp_path, "pool.yaml", POOL + f"    {field}: {largest}\n")
    assert getattr(pool.models[0], field) == yaml.safe_load(largest)
    message = refused(tmp_path, "pool.yaml", POOL + f"    {field}: {too_large}\n")
    assert message.startswith(f"pool.yaml: models[0].{field}: must be "), message


def test_question_counts_have_an_upper_bound(tmp_path):
    assert load(tmp_path, "tasks.yaml", "questions_per_subject: 1000000\n" + TASKS).questions == {"law": 1_000_000}
    message = refused(tmp_path, "tasks.yaml", "questions_per_subject: 1000001\n" + TASKS)
    assert message.startswith("tasks.yaml: questions_per_subject: must be at most 1000000, got 1000001"), message


def test_pool_prices_at_the_bound_stay_finite(tmp_path):
    pool = load(tmp_path, "pool.yaml", POOL + "    price_input_per_mtok: 1000000\n    price_output_per_mtok: 1.0e+6\n")
    assert pool.prices() == {"m": (1e6, 1e6)}


# ----------------------------------------------------------------------------- fuzz
_RAW = st.sampled_from(
    [
        HUGE,
        "-" + HUGE,
        "9" * 4400,
        ".nan",
        ".inf",
        "-.inf",
        "1e308",
        "1.0e+308",
        "0x1F",
        "0o17",
        "1_000",
        "12:30:00",
        "2026-02-30",
        "~",
        "!!int x",
        "!!float y",
        "!!bool z",
        "!!binary '@@'",
        "!!python/name:os.system",
        "&a 1",
        "*a",
        "[",
        "{",
        "'unclosed",
        "- a",
        ": b",
        "? c",
        "\t",
        "%YAML 1.1",
        "--- x",
        "...",
        "<<: {a: 1}",
        "!!timestamp q",
        "[" * 100,
    ]
)
_DUMPED = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
).map(lambda value: yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1])
#: a value as it appears after ``field: `` (raw text, or a Python value written by yaml)
_SCALARS = st.one_of(_RAW, _DUMPED)
#: fields of each file kind that the scalar fuzz fills
_FIELDS = {
    "pool.yaml": [
        "max_concurrency",
        "timeout",
        "request_deadline",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "price_input_per_mtok",
        "price_output_per_mtok",
        "stream",
        "logprobs",
        "name",
        "base_url",
    ],
    "tasks.yaml": ["questions_per_subject"],
    "prices.yaml": ["chars_per_token", "prompt_overhead_tokens"],
}


def _document(name: str, field: str, value: str) -> str:
    if name == "pool.yaml":
        return POOL + f"    {field}: {value}\n"
    return f"{field}: {value}\n" + GOOD[name]


def _loads_or_config_error(tmp_path: Path, name: str, text: str) -> None:
    start = time.perf_counter()
    try:
        load(tmp_path, name, text)
    except ConfigError as exc:
        assert str(exc).startswith(label(tmp_path, name)), str(exc)
    assert time.perf_counter() - start < 2.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_scalar_values_in_every_numeric_field(tmp_path, data):
    name = data.draw(st.sampled_from(list(LOADERS)))
    field = data.draw(st.sampled_from(_FIELDS[name]))
    value = data.draw(_SCALARS)
    _loads_or_config_error(tmp_path, name, _document(name, field, value))
    if name == "prices.yaml":  # and in a model's prices
        price = data.draw(st.sampled_from(["price_input_per_mtok", "price_output_per_mtok"]))
        other = "price_output_per_mtok" if price == "price_input_per_mtok" else "price_input_per_mtok"
        _loads_or_config_error(tmp_path, name, f"models:\n  m:\n    {price}: {value}\n    {other}: 1\n")


#: YAML-ish text: pieces of YAML syntax, names of the config fields and numbers, joined at random
_YAMLISH = st.lists(
    st.sampled_from(
        list("ab01.-+e:,[]{}&*!?|>'\"#%@`~ \t\n")
        + [
            "\n  ",
            "\n- ",
            ": ",
            "models",
            "subjects",
            "retry",
            "defaults",
            "name",
            "price_input_per_mtok",
            "max_attempts",
            "chars_per_token",
            "!!int ",
            "!!float ",
            ".nan",
            ".inf",
            HUGE,
            "2026-02-30",
            "&x ",
            "*x",
        ]
    ),
    max_size=60,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(list(LOADERS)), text=_YAMLISH, prefix=st.booleans())
def test_fuzz_yamlish_documents(tmp_path, parser, name, text, prefix):
    _loads_or_config_error(tmp_path, name, (GOOD[name] if prefix else "") + text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(list(LOADERS)),
    doc=st.recursive(
        st.one_of(st.integers(-(10**400), 10**400), st.floats(), st.booleans(), st.none(), st.text(max_size=8)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "models",
                        "subjects",
                        "m",
                        "retry",
                        "defaults",
                        "name",
                        "price_input_per_mtok",
                        "price_output_per_mtok",
                        "questions",
                        "max_attempts",
                        "chars_per_token",
                    ]
                ),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=20,
    ),
)
def test_fuzz_random_documents(tmp_path, name, doc):
    _loads_or_config_error(tmp_path, name, yaml.safe_dump(doc))
