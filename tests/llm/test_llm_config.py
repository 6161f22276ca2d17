"""pool.yaml / tasks.yaml: example files load; every invalid file names the file and the field."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pydantic
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal import errors
from cascal.llm.config import (
    EMPTY_API_KEY,
    ConfigError,
    ModelConfig,
    PoolConfig,
    RetryPolicy,
    TasksConfig,
    load_pool,
    load_tasks,
    parse_pool,
    parse_tasks,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def good_model(i: int = 0, **extra: object) -> dict:
    return {"name": f"m{i}", "model": f"org/model-{i}", "base_url": "http://127.0.0.1:8000/v1", **extra}


# ----------------------------------------------------------------------------- example files
def test_example_pool_loads_with_its_documented_values():
    pool = load_pool(EXAMPLES / "pool.yaml")
    assert pool.names == ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b", "gpt-4o-mini"]
    llama, qwen, mistral, gpt = pool.models
    assert llama.base_url == "http://127.0.0.1:8000/v1"  # from defaults
    assert qwen.base_url == "http://127.0.0.1:8001/v1" and qwen.seed == 0  # own value wins over defaults
    assert mistral.logprobs is False and mistral.stream is True
    assert gpt.api_key_env == "OPENAI_API_KEY" and gpt.max_concurrency == 16
    assert llama.max_concurrency == 8 and llama.temperature == 0.0 and llama.max_tokens == 2048
    assert pool.retry == RetryPolicy(6, 0.5, 30.0, 0.25, 60.0, 1)


def test_example_tasks_load_with_counts_and_generator():
    tasks = load_tasks(EXAMPLES / "tasks.yaml")
    assert tasks.names == ["organic_chemistry", "constitutional_law", "microeconomics"]
    assert tasks.questions == {"organic_chemistry": 50, "constitutional_law": 30, "microeconomics": 50}
    assert tasks.subjects["organic_chemistry"].startswith("Graduate-level organic chemistry")
    assert "\n" not in tasks.subjects["constitutional_law"]
    assert tasks.generator is not None and tasks.generator.model == "Qwen/Qwen2.5-72B-Instruct"
    assert tasks.generator.logprobs is False


# ----------------------------------------------------------------------------- pool errors
@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"models": [good_model(0), good_model(1), {"name": "m2", "model": "x"}]},
            "pool.yaml: models[2].base_url: required",
        ),
        ({"models": [good_model(0), {"model": "x", "base_url": "http://h/v1"}]}, "pool.yaml: models[1].name: required"),
        ({"models": [good_model(0, temprature=0.5)]}, "pool.yaml: models[0].temprature: unknown field"),
        (
            {"models": [good_model(0, max_concurrency=0)]},
            "pool.yaml: models[0].max_concurrency: must be an integer >= 1",
        ),
        ({"models": [good_model(0, max_concurrency="8")]}, "pool.yaml: models[0].max_concurrency: must be an integer"),
        ({"models": [good_model(0, temperature=3)]}, "pool.yaml: models[0].temperature: must be a number in [0, 2]"),
        ({"models": [good_model(0, logprobs="yes")]}, "pool.yaml: models[0].logprobs: must be true or false"),
        ({"models": [good_model(0, base_url="127.0.0.1:8000")]}, "pool.yaml: models[0].base_url: must start with http"),
        ({"models": [good_model(0, timeout=-1)]}, "pool.yaml: models[0].timeout: must be a positive number"),
        ({"models": [good_model(0), good_model(0)]}, "pool.yaml: models[1].name: duplicate name 'm0'"),
        ({"models": []}, "pool.yaml: models: must be a non-empty list"),
        ({"modles": [good_model(0)]}, "pool.yaml: modles: unknown field"),
        ({}, "pool.yaml: models: required"),
        (
            {"models": [good_model(0)], "retry": {"max_attempts": 0}},
            "pool.yaml: retry.max_attempts: must be an integer >= 1",
        ),
        ({"models": [good_model(0)], "retry": {"jitter": 2}}, "pool.yaml: retry.jitter: must be a number in [0, 1]"),
        ({"models": [good_model(0)], "retry": {"retries": 2}}, "pool.yaml: retry.retries: unknown field"),
        (
            {"models": [good_model(0)], "defaults": {"name": "x"}},
            "pool.yaml: defaults.name: a name cannot be a default",
        ),
        ({"models": [good_model(0)], "defaults": {"tempreature": 1}}, "pool.yaml: defaults.tempreature: unknown field"),
        ({"models": ["m0"]}, "pool.yaml: models[0]: expected a mapping"),
        ([1, 2], "pool.yaml: expected a mapping"),
    ],
)
def test_invalid_pool_names_file_and_field(tmp_path, data, message):
    path = write(tmp_path, "pool.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_pool(path)
    assert str(info.value).startswith(message), str(info.value)


def test_pool_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_pool(tmp_path / "missing.yaml")
    bad = write(tmp_path, "broken.yaml", "models: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_pool(bad)


def test_defaults_apply_and_models_override(tmp_path):
    data = {
        "defaults": {"base_url": "http://127.0.0.1:9000/v1", "temperature": 0.3, "max_concurrency": 2},
        "models": [
            {"name": "a", "model": "ma"},
            {"name": "b", "model": "mb", "temperature": 0.0, "base_url": "https://x/v1"},
        ],
    }
    pool = load_pool(write(tmp_path, "p.yaml", data))
    a, b = pool.models
    assert (a.base_url, a.temperature, a.max_concurrency) == ("http://127.0.0.1:9000/v1", 0.3, 2)
    assert (b.base_url, b.temperature, b.max_concurrency) == ("https://x/v1", 0.0, 2)


def test_api_key_from_env_or_empty(monkeypatch):
    assert ModelConfig(**good_model()).api_key() == EMPTY_API_KEY
    keyed = ModelConfig(**good_model(api_key_env="CASCAL_TEST_KEY"))
    monkeypatch.delenv("CASCAL_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="model 'm0': api_key_env: environment variable CASCAL_TEST_KEY is not set"):
        keyed.api_key()
    monkeypatch.setenv("CASCAL_TEST_KEY", "sk-test")
    assert keyed.api_key() == "sk-test"


def test_sampling_params_send_only_what_is_set():
    m = ModelConfig(**good_model(temperature=0.2, max_tokens=64, seed=7, top_p=None, logprobs=True))
    assert m.sampling_params() == {"temperature": 0.2, "max_tokens": 64, "seed": 7, "logprobs": True}
    bare = ModelConfig(**good_model(temperature=None, max_tokens=None, logprobs=False))
    assert bare.sampling_params() == {}


def test_pool_select_and_overrides():
    pool = parse_pool({"models": [good_model(0), good_model(1), good_model(2)]})
    assert pool.select(["m2", "m0"]).names == ["m2", "m0"]
    with pytest.raises(ConfigError, match="no model named 'zz'"):
        pool.select(["zz"])
    assert {m.max_concurrency for m in pool.with_concurrency(3).models} == {3}


# ----------------------------------------------------------------------------- tasks errors
@pytest.mark.parametrize(
    "data, message",
    [
        ({"subjects": {"law": {"questions": 3}}}, "tasks.yaml: subjects.law.description: required"),
        (
            {"subjects": {"law": {"description": "x", "questions": 0}}},
            "tasks.yaml: subjects.law.questions: must be an integer >= 1",
        ),
        ({"subjects": {"law": {"description": "x", "n": 3}}}, "tasks.yaml: subjects.law.n: unknown field"),
        ({"subjects": {"law": ""}}, "tasks.yaml: subjects.law: must be a non-empty description"),
        (
            {"subjects": {"law": {"description": 5}}},
            "tasks.yaml: subjects.law.description: must be a non-empty description",
        ),
        ({"subjects": {}}, "tasks.yaml: subjects: at least one subject is required"),
        ({"questions_per_subject": 10}, "tasks.yaml: subjects: required"),
        (
            {"subjects": {"law": "x"}, "questions_per_subject": -1},
            "tasks.yaml: questions_per_subject: must be an integer >= 1",
        ),
        (
            {"subjects": {"law": "x"}, "generator": {"name": "g", "model": "m"}},
            "tasks.yaml: generator.base_url: required",
        ),
        ({"subjects": {"law": "x"}, "generatr": {}}, "tasks.yaml: generatr: unknown field"),
    ],
)
def test_invalid_tasks_names_file_and_field(tmp_path, data, message):
    path = write(tmp_path, "tasks.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_tasks(path)
    assert str(info.value).startswith(message), str(info.value)


def test_tasks_default_count_and_lookup(tmp_path):
    tasks = load_tasks(
        write(
            tmp_path,
            "t.yaml",
            {"questions_per_subject": 7, "subjects": {"a": "alpha", "b": {"description": "beta", "questions": 2}}},
        )
    )
    assert tasks.n_questions("a") == 7 and tasks.n_questions("b") == 2 and tasks.generator is None
    with pytest.raises(ConfigError, match="no subject named 'c'"):
        tasks.n_questions("c")


# ----------------------------------------------------------------------------- messages and strictness
def test_config_error_is_the_shared_one():
    assert ConfigError is errors.ConfigError and issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "name, data, message",
    [
        (
            "pool.yaml",
            {"models": [good_model(0), good_model(1, retry=2)]},
            "pool.yaml: models[1].retry: unknown field (allowed: api_key_env, base_url, logprobs, max_concurrency, max_tokens,",
        ),
        (
            "tasks.yaml",
            {"subjects": {"law": "x"}, "generator": {**good_model(0), "top_p": 0}},
            "tasks.yaml: generator.top_p: must be a number in (0, 1], got 0",
        ),
        (
            "tasks.yaml",
            {"subjects": {"a": "x", "civil law": {"description": "y", "questions": 2.5}}},
            "tasks.yaml: subjects['civil law'].questions: must be an integer >= 1, got 2.5",
        ),
        (
            "tasks.yaml",
            {"subjects": {"law": {"description": "x"}, 7: "y"}},
            "tasks.yaml: subjects[7]: must be a non-empty subject name, got 7",
        ),
        (
            "pool.yaml",
            {"models": [good_model(0)], "retry": {"base_delay": float("inf")}},
            "pool.yaml: retry.base_delay: must be a finite number >= 0, got inf",
        ),
        (
            "pool.yaml",
            {"models": [good_model(0)], "defaults": {"temperature": 5}},
            "pool.yaml: models[0].temperature: must be a number in [0, 2], got 5",
        ),
    ],
)
def test_nested_bad_fields_name_file_and_path(tmp_path, name, data, message):
    with pytest.raises(ConfigError) as info:
        (load_pool if name == "pool.yaml" else load_tasks)(write(tmp_path, name, data))
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_concurrency", True, "must be an integer >= 1, got True"),
        ("max_tokens", 64.0, "must be an integer >= 1, got 64.0"),
        ("temperature", "0.5", "must be a number in [0, 2], got '0.5'"),
        ("stream", 1, "must be true or false, got 1"),
        ("name", 3, "must be a non-empty string without control characters (CR, LF, tab, ...), got 3"),
        ("seed", "7", "must be an integer, got '7'"),
    ],
)
def test_no_silent_coercion(field, value, message):
    with pytest.raises(ConfigError) as info:
        parse_pool({"models": [good_model(0, **{field: value})]})
    assert str(info.value) == f"pool.yaml: models[0].{field}: {message}"


def test_unknown_fields_are_refused_everywhere():
    for data, where in [
        ({"models": [good_model(0)], "extra": 1}, "extra"),
        ({"models": [good_model(0)], "source": "x.yaml"}, "source"),
        ({"models": [good_model(0)], "retry": {"max_attempts": 2, "backof": 1}}, "retry.backof"),
        ({"models": [good_model(0, **{"1": 2})]}, "models[0].1"),
    ]:
        with pytest.raises(ConfigError, match=rf"^pool\.yaml: {re.escape(where)}: unknown field"):
            parse_pool(data)
    with pytest.raises(
        ConfigError, match=r"^tasks\.yaml: subjects\.law\.count: unknown field \(allowed: description, questions\)"
    ):
        parse_tasks({"subjects": {"law": {"description": "x", "count": 3}}})


def test_long_bad_values_are_cut_in_messages(tmp_path):
    long_url = "ftp://" + "x" * 10_000
    with pytest.raises(ConfigError) as info:
        load_pool(write(tmp_path, "pool.yaml", {"models": [good_model(0, base_url=long_url)]}))
    message = str(info.value)
    assert message.startswith("pool.yaml: models[0].base_url: must start with http:// or https://, got 'ftp://xxx")
    assert "..." in message and len(message) < 200
    with pytest.raises(ConfigError) as info:
        parse_tasks({"subjects": {"law": ["q" * 5000] * 1000}})
    assert str(info.value).startswith("tasks.yaml: subjects.law: must be a non-empty description string, got ['qqq")
    assert len(str(info.value)) < 200


def test_several_problems_are_counted_on_one_line():
    with pytest.raises(ConfigError) as info:
        parse_pool({"models": [{"name": "a"}, {"name": "b", "model": "m", "base_url": "http://h/v1", "timeout": 0}]})
    assert str(info.value) == "pool.yaml: models[0].base_url: required (and 2 more)"


def test_empty_sections_are_empty_mappings():
    pool = parse_pool({"models": [good_model(0)], "retry": None, "defaults": None})
    assert pool.retry == RetryPolicy() and pool.source == "pool.yaml"
    with pytest.raises(ConfigError, match="^tasks.yaml: subjects: at least one subject is required"):
        parse_tasks({"subjects": None})


def test_direct_construction_checks_the_same_rules_and_keeps_values():
    with pytest.raises(ConfigError, match=r"^max_concurrency: must be an integer >= 1, got 0$"):
        ModelConfig(**good_model(max_concurrency=0))
    with pytest.raises(ConfigError, match=r"^models\[1\]\.name: duplicate name 'm0'$"):
        PoolConfig((ModelConfig(**good_model()), ModelConfig(**good_model())))
    with pytest.raises(ConfigError, match=r"^questions: must give a count for every subject$"):
        TasksConfig({"a": "x"}, {"b": 1})
    with pytest.raises(TypeError):
        RetryPolicy(3, max_attempts=3)
    m = ModelConfig(**good_model(temperature=0, timeout=30))
    assert (
        type(m.temperature) is int and m.sampling_params()["temperature"] == 0
    )  # the cache key sees what the file says
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        m.name = "other"
    pool = PoolConfig((m,), retry=RetryPolicy(max_attempts=2))
    with pytest.raises(ConfigError, match="max_concurrency"):
        pool.with_concurrency(0)
    assert pool.with_retry(RetryPolicy()).retry == RetryPolicy() and pool.with_concurrency(2).models[0].timeout == 30


# ----------------------------------------------------------------------------- retry policy
@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(0, 40),
    u=st.floats(-1, 1),
    base=st.floats(0, 5),
    cap=st.floats(0, 60),
    jitter=st.floats(0, 1),
)
def test_backoff_stays_within_jittered_exponential_bounds(attempt, u, base, cap, jitter):
    policy = RetryPolicy(base_delay=base, max_delay=cap, jitter=jitter)
    wait = policy.backoff(attempt, u)
    nominal = min(cap, base * 2.0**attempt)
    assert math.isfinite(wait)
    assert nominal * (1 - jitter) - 1e-9 <= wait <= nominal * (1 + jitter) + 1e-9


def test_retry_after_is_capped():
    policy = RetryPolicy(max_retry_after=2.0)
    assert policy.retry_after(0.5) == 0.5
    assert policy.retry_after(100.0) == 2.0
    assert policy.retry_after(-3.0) == 0.0


# ----------------------------------------------------------------------------- YAML anchors and aliases
def billion_laughs(levels: int = 9) -> str:
    """A YAML value of 9**levels strings in a few hundred bytes, built from nested aliases."""
    parts = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    parts += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize(
    "name, text, line",
    [
        ("pool.yaml", "models:\n  - name: m\n    model: x\n    base_url: http://h/v1\n    temperature: {bomb}\n", 5),
        ("pool.yaml", "retry:\n  max_attempts: {bomb}\nmodels: []\n", 2),
        ("tasks.yaml", "subjects:\n  law: {bomb}\n", 2),
        ("tasks.yaml", "subjects:\n  {bomb}: x\n", 2),
    ],
)
def test_alias_bombs_fail_fast_with_file_and_line(tmp_path, name, text, line):
    path = write(tmp_path, name, text.replace("{bomb}", billion_laughs()))
    assert path.stat().st_size < 600
    load = load_pool if name == "pool.yaml" else load_tasks
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load(path)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert message.startswith(f"{name}:{line}: YAML anchors and aliases are not supported, found anchor &l0")
    assert len(message) < 200


def test_any_anchor_or_alias_is_refused_with_its_line(tmp_path):
    shared = "models:\n  - &m {name: a, model: x, base_url: 'http://h/v1'}\n  - *m\n"
    with pytest.raises(ConfigError, match=r"^pool.yaml:2: YAML anchors and aliases are not supported, found anchor &m"):
        load_pool(write(tmp_path, "pool.yaml", shared))
    merged = "models:\n  - name: a\n    model: x\n    base_url: http://h/v1\n  - <<: *d\n    name: b\n"
    with pytest.raises(ConfigError, match=r"^pool.yaml:5: .* found alias \*d; write the value out"):
        load_pool(write(tmp_path, "pool.yaml", merged))


def test_config_files_must_be_utf8(tmp_path):
    path = tmp_path / "pool.yaml"
    path.write_bytes(b"models:\n  - name: \xff\n")
    with pytest.raises(ConfigError, match=r"^pool.yaml:2: not UTF-8 text \(invalid start byte at byte 18\)"):
        load_pool(path)  # a ConfigError naming the line and byte, not a UnicodeDecodeError
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump({"models": [good_model(0)]}).encode())
    assert load_pool(path).names == ["m0"]  # a byte-order mark is fine


# ----------------------------------------------------------------------------- request deadline
def test_request_deadline_has_a_default_is_checked_and_can_be_a_default(tmp_path):
    assert ModelConfig(**good_model()).request_deadline == 1800.0
    for bad in (0, -1, math.inf, math.nan, True, "60"):
        with pytest.raises(ConfigError, match="request_deadline: must be a positive number of seconds"):
            ModelConfig(**good_model(request_deadline=bad))
    data = {"defaults": {"request_deadline": 90}, "models": [good_model(0), good_model(1, request_deadline=2.5)]}
    pool = load_pool(write(tmp_path, "pool.yaml", data))
    assert [m.request_deadline for m in pool.models] == [90, 2.5]
    with pytest.raises(ConfigError, match=r"bad.yaml: models\[0\].request_deadline: must be a positive number"):
        load_pool(write(tmp_path, "bad.yaml", {"models": [good_model(0, request_deadline=0)]}))
