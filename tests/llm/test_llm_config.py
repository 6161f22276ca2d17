"""pool.yaml / tasks.yaml: example files load; every invalid file names the file and the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.llm.config import (
    EMPTY_API_KEY,
    ConfigError,
    ModelConfig,
    RetryPolicy,
    load_pool,
    load_tasks,
    parse_pool,
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
        ({"models": [good_model(0), good_model(1), {"name": "m2", "model": "x"}]}, "pool.yaml: models[2].base_url: required"),
        ({"models": [good_model(0), {"model": "x", "base_url": "http://h/v1"}]}, "pool.yaml: models[1].name: required"),
        ({"models": [good_model(0, temprature=0.5)]}, "pool.yaml: models[0].temprature: unknown field"),
        ({"models": [good_model(0, max_concurrency=0)]}, "pool.yaml: models[0].max_concurrency: must be an integer >= 1"),
        ({"models": [good_model(0, max_concurrency="8")]}, "pool.yaml: models[0].max_concurrency: must be an integer"),
        ({"models": [good_model(0, temperature=3)]}, "pool.yaml: models[0].temperature: must be a number in [0, 2]"),
        ({"models": [good_model(0, logprobs="yes")]}, "pool.yaml: models[0].logprobs: must be true or false"),
        ({"models": [good_model(0, base_url="127.0.0.1:8000")]}, "pool.yaml: models[0].base_url: must start with http"),
        ({"models": [good_model(0, timeout=-1)]}, "pool.yaml: models[0].timeout: must be a positive number"),
        ({"models": [good_model(0), good_model(0)]}, "pool.yaml: models[1].name: duplicate name 'm0'"),
        ({"models": []}, "pool.yaml: models: must be a non-empty list"),
        ({"modles": [good_model(0)]}, "pool.yaml: modles: unknown field"),
        ({}, "pool.yaml: models: required"),
        ({"models": [good_model(0)], "retry": {"max_attempts": 0}}, "pool.yaml: retry.max_attempts: must be an integer >= 1"),
        ({"models": [good_model(0)], "retry": {"jitter": 2}}, "pool.yaml: retry.jitter: must be a number in [0, 1]"),
        ({"models": [good_model(0)], "retry": {"retries": 2}}, "pool.yaml: retry.retries: unknown field"),
        ({"models": [good_model(0)], "defaults": {"name": "x"}}, "pool.yaml: defaults.name: a name cannot be a default"),
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
        "models": [{"name": "a", "model": "ma"}, {"name": "b", "model": "mb", "temperature": 0.0, "base_url": "https://x/v1"}],
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
        ({"subjects": {"law": {"description": "x", "questions": 0}}}, "tasks.yaml: subjects.law.questions: must be an integer >= 1"),
        ({"subjects": {"law": {"description": "x", "n": 3}}}, "tasks.yaml: subjects.law.n: unknown field"),
        ({"subjects": {"law": ""}}, "tasks.yaml: subjects.law: must be a non-empty description"),
        ({"subjects": {"law": {"description": 5}}}, "tasks.yaml: subjects.law.description: must be a non-empty description"),
        ({"subjects": {}}, "tasks.yaml: subjects: at least one subject is required"),
        ({"questions_per_subject": 10}, "tasks.yaml: subjects: required"),
        ({"subjects": {"law": "x"}, "questions_per_subject": -1}, "tasks.yaml: questions_per_subject: must be an integer >= 1"),
        ({"subjects": {"law": "x"}, "generator": {"name": "g", "model": "m"}}, "tasks.yaml: generator.base_url: required"),
        ({"subjects": {"law": "x"}, "generatr": {}}, "tasks.yaml: generatr: unknown field"),
    ],
)
def test_invalid_tasks_names_file_and_field(tmp_path, data, message):
    path = write(tmp_path, "tasks.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_tasks(path)
    assert str(info.value).startswith(message), str(info.value)


def test_tasks_default_count_and_lookup(tmp_path):
    tasks = load_tasks(write(tmp_path, "t.yaml", {"questions_per_subject": 7, "subjects": {"a": "alpha", "b": {"description": "beta", "questions": 2}}}))
    assert tasks.n_questions("a") == 7 and tasks.n_questions("b") == 2 and tasks.generator is None
    with pytest.raises(ConfigError, match="no subject named 'c'"):
        tasks.n_questions("c")


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
