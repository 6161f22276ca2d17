"""Prices files and cost tables that cannot be used are refused when they are read, naming the file,
the model and the field: alias bombs and oversized files (reading stays fast), prices that are not
numbers or overflow the cost tables (docs/algorithm.md#prices-and-tokens)."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from cascal.commands._args import read_prices as _prices
from cascal.data import ResponseMatrix
from cascal.errors import ConfigError, DataError, InvalidParameterError
from cascal.router import CascalRouter
from cascal.router.costs import Prices, cost_tables, load_prices, question_costs

MODELS = ["strong", "cheap", "f1"]


def make_world(per_niche: int = 10, seed: int = 0) -> tuple[np.ndarray, ResponseMatrix, None, None]:
    """Two subjects of two tight clusters each in 8-d; every model answers every question and wrote
    100 completion tokens on each (the cost.csv counts)."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(8, 4)))[0].T
    X = np.vstack([c + 0.05 * rng.normal(size=(per_niche, 8)) for c in centres])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    n = len(X)
    gold = rng.integers(0, 4, n)
    answers = np.where(rng.random((n, len(MODELS))) < 0.7, gold[:, None], (gold[:, None] + 1) % 4)
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, 4),
        subjects=np.repeat(["s0", "s1"], 2 * per_niche),
        model_names=MODELS,
        cost=np.full((n, len(MODELS)), 100.0, dtype=np.float32),
        questions=["question text"] * n,
        options=[["a", "b", "c", "d"]] * n,
    )
    return X, responses, None, None


def prices_file(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def priced(price_in: str, price_out: str = "1", model: str = "m", head: str = "") -> str:
    return f"{head}models:\n  {model}:\n    price_input_per_mtok: {price_in}\n    price_output_per_mtok: {price_out}\n"


BOMB = "".join(
    ["    l0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"]
    + [f"    l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)]
)


def both_readers(path: Path):
    """``load_prices`` and ``cascal train --prices`` (which also takes a pool.yaml)."""
    return [lambda: load_prices(path), lambda: _prices(str(path))]


# ----------------------------------------------------------------------------- reading the file
def test_an_alias_bomb_price_fails_fast_naming_file_and_line(tmp_path):
    # before: the 9**9-value alias tree was walked by the price check's repr: growing memory for
    # as long as it was let run (20 s: 320 MB and rising), never finishing
    path = prices_file(
        tmp_path, "models:\n  m:\n" + BOMB + "    price_input_per_mtok: *a8\n    price_output_per_mtok: 1\n"
    )
    assert path.stat().st_size < 600
    for read in both_readers(path):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with pytest.raises(ConfigError) as info:
            read()
        assert time.perf_counter() - start < 1.0
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
        assert str(info.value).startswith(f"{path}:3: YAML anchors and aliases are not supported, found anchor &a0")


def test_a_prices_file_over_one_mib_is_refused_before_parsing(tmp_path):
    # before: parsed whole, about a second and 25 MB per MiB (a 50 MB file: over two minutes and
    # 460 MB here, unfinished)
    text = priced("1") + "".join(
        f"  m{i}: {{price_input_per_mtok: 1.5, price_output_per_mtok: 2.5}}\n" for i in range(40_000)
    )
    path = prices_file(tmp_path, text)
    assert path.stat().st_size > 2**21
    for read in both_readers(path):
        start = time.perf_counter()
        with pytest.raises(ConfigError, match=rf"^{path}: file larger than 1048576 bytes \(1 MiB\)"):
            read()
        assert time.perf_counter() - start < 0.5


# ----------------------------------------------------------------------------- price values
@pytest.mark.parametrize("value", ["1.0e+308", "1.0e+7", "1000000.01", "9" * 400, "-" + "9" * 400])
@pytest.mark.parametrize("field", ["price_input_per_mtok", "price_output_per_mtok"])
def test_prices_beyond_the_bound_are_refused_naming_file_model_and_field(tmp_path, field, value):
    # before: 1e308 was accepted (the cost tables overflowed to inf and every routed request failed);
    # a 400-digit integer raised OverflowError from float()
    text = priced(value, "1", model="gpt-x") if field == "price_input_per_mtok" else priced("1", value, model="gpt-x")
    path = prices_file(tmp_path, text)
    for read in both_readers(path):
        with pytest.raises(ConfigError) as info:
            read()
        message = str(info.value)
        assert message.startswith(f"{path}: prices['gpt-x'].{field}: must be a number in [0, 1000000]"), message
        assert len(message) < 300


@pytest.mark.parametrize("value", ["true", "'5'", ".nan", ".inf", "-.inf", "-1", "[1]", "null", "2026-01-01"])
def test_prices_that_are_not_numbers_are_refused(tmp_path, value):
    path = prices_file(tmp_path, priced(value))
    with pytest.raises(ConfigError, match=rf"^{path}: prices\['m'\].price_input_per_mtok: must be a number"):
        load_prices(path)


def test_the_largest_price_is_accepted_and_its_cost_tables_are_finite():
    from cascal.router.costs import MAX_PRICE_PER_MTOK

    assert MAX_PRICE_PER_MTOK == 1e6
    X, responses, _, _ = make_world(per_niche=20)
    prices = Prices({m: (MAX_PRICE_PER_MTOK, MAX_PRICE_PER_MTOK) for m in responses.model_names})
    router = CascalRouter(random_state=0).fit(X, responses, prices=prices)
    assert np.isfinite(router.tables_.centroid_costs).all() and np.isfinite(router.tables_.global_costs).all()
    routing = router.route(X[:5], cost_weight=1.0)
    assert np.isfinite(routing.expected_cost).all()


@pytest.mark.parametrize(
    "head, field",
    [
        ("chars_per_token: 0.001\n", "chars_per_token"),
        ("chars_per_token: " + "9" * 400 + "\n", "chars_per_token"),
        ("chars_per_token: true\n", "chars_per_token"),
        ("prompt_overhead_tokens: 1.0e+308\n", "prompt_overhead_tokens"),
        ("prompt_overhead_tokens: " + "9" * 400 + "\n", "prompt_overhead_tokens"),
        ("prompt_overhead_tokens: .inf\n", "prompt_overhead_tokens"),
        ("prompt_overhead_tokens: '5'\n", "prompt_overhead_tokens"),
    ],
)
def test_token_settings_are_bounded(tmp_path, head, field):
    # before: a 400-digit integer raised OverflowError; 1e308 overhead tokens overflowed every cost
    path = prices_file(tmp_path, priced("1", head=head))
    with pytest.raises(ConfigError, match=rf"^{path}: {field}: must be a number in "):
        load_prices(path)


def test_a_pool_file_as_prices_is_checked_the_same_way(tmp_path):
    pool = "models:\n  - name: m\n    model: x\n    base_url: http://h/v1\n    price_input_per_mtok: {v}\n"
    good = prices_file(tmp_path, pool.format(v="2.5"), name="pool.yaml")
    assert _prices(str(good)) == {"m": (2.5, 0.0)}
    for value in ("1.0e+308", "9" * 400):
        path = prices_file(tmp_path, pool.format(v=value), name="pool.yaml")
        with pytest.raises(
            ConfigError, match=r"^pool.yaml: models\[0\].price_input_per_mtok: must be at most 1000000, got "
        ):
            _prices(str(path))


def test_prices_given_in_python_are_bounded_too():
    with pytest.raises(
        InvalidParameterError,
        match=r"^prices\['m'\].price_output_per_mtok: must be a number in \[0, 1000000\], got 1e\+308",
    ):
        Prices({"m": (1.0, 1e308)})
    with pytest.raises(
        InvalidParameterError, match=r"^prices\['m'\].price_input_per_mtok: .*got 1000000000000.*\.\.\..*0000$"
    ):
        Prices({"m": (10**400, 1.0)})


# ----------------------------------------------------------------------------- the cost tables
def test_question_costs_that_overflow_name_the_model():
    _, responses, _, _ = make_world(per_niche=5)
    tokens = np.array(responses.cost, dtype=np.float32)
    tokens[3, 2] = np.inf  # a cost.csv value beyond float32
    responses.cost = tokens
    with pytest.raises(DataError, match=r"^cost: model 'f1': expected cost not finite .*question 3"):
        question_costs(responses, Prices({"f1": (1.0, 1.0)}), warn=False)
    tokens[3, 2] = np.nan  # unknown stays allowed
    assert np.isnan(question_costs(responses, Prices({"f1": (1.0, 1.0)}), warn=False)[3, 2])


def test_cost_tables_refuse_non_finite_results_naming_the_model():
    X = np.eye(3)
    costs = np.array([[1.0, 1e308], [1.0, 1e308], [1.0, 1e308]])  # finite costs whose sums overflow
    with pytest.raises(DataError, match=r"^cost tables: model 'b': expected costs not finite"):
        cost_tables(X, np.zeros(3, dtype=int), X[:1], np.zeros(1, dtype=int), costs, model_names=["a", "b"])
    with pytest.raises(DataError, match=r"^cost tables: model #1: expected costs not finite"):
        cost_tables(X, np.zeros(3, dtype=int), X[:1], np.zeros(1, dtype=int), costs)
    centroid, global_ = cost_tables(X, np.zeros(3, dtype=int), X[:1], np.zeros(1, dtype=int), costs[:, :1])
    assert math.isfinite(global_[0]) and np.isfinite(centroid).all()


def test_the_bounds_keep_the_tables_finite_at_the_largest_tokens():
    # the largest price times the largest completion-token count a float32 cost.csv holds
    X, responses, _, _ = make_world(per_niche=5)
    tokens = np.array(responses.cost, dtype=np.float32)
    tokens[:, 0] = np.finfo(np.float32).max
    responses.cost = tokens
    prices = Prices({m: (1e6, 1e6) for m in MODELS}, chars_per_token=0.01, prompt_overhead_tokens=1e9)
    router = CascalRouter(random_state=0).fit(X, responses, prices=prices)
    assert np.isfinite(router.tables_.centroid_costs).all() and np.isfinite(router.tables_.global_costs).all()
