"""One error story: every error cascal raises on purpose is a CascalError that keeps its old builtin
base and its old import paths, and the command line reports it as one ``error:`` line with exit
status 2, while a bug keeps its traceback."""

from __future__ import annotations

import ast
import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest

import cascal.errors as errors
from cascal.cli import main
from cascal.data import ResponseMatrix
from cascal.io import save_dataset

#: Every public class of cascal.errors -> the builtin bases it had before cascal.errors existed.
LEGACY_BASES: dict[type, tuple[type, ...]] = {
    errors.DataError: (ValueError,),
    errors.ConfigError: (ValueError,),
    errors.InvalidParameterError: (ValueError,),
    errors.RouterFileError: (ValueError,),
    errors.ProtocolError: (ValueError,),
    errors.EmbeddingError: (ValueError,),
    errors.UnknownModelError: (ValueError, LookupError),
    errors.KernelError: (ValueError,),
    errors.ClosedError: (ValueError,),
    errors.ArgumentTypeError: (TypeError,),
    errors.NotFoundError: (KeyError,),
    errors.NotFittedError: (RuntimeError,),
    errors.EndpointError: (RuntimeError,),
    errors.GenerationError: (RuntimeError,),
    errors.ServerStartError: (RuntimeError,),
    errors.ReloadError: (RuntimeError,),
}


#: Every warning class of cascal.errors -> the builtin warning category it had before it had a class.
WARNING_BASES: dict[type, type] = {
    errors.NoUsableAnswerWarning: UserWarning,
    errors.PricingWarning: UserWarning,
    errors.ReplyWarning: UserWarning,
    errors.DecisionLogWarning: UserWarning,
    errors.EmbedderFallbackWarning: RuntimeWarning,
}


def test_every_error_class_is_a_cascal_error_and_keeps_its_builtin_base():
    public = {getattr(errors, name) for name in errors.__all__}
    public = {c for c in public if isinstance(c, type)} - {errors.CascalError, errors.CascalWarning}
    assert public == set(LEGACY_BASES) | set(WARNING_BASES), "a class of cascal.errors is missing from a table"
    for cls, bases in LEGACY_BASES.items():
        assert issubclass(cls, errors.CascalError), cls
        for base in bases:
            assert issubclass(cls, base), (cls, base)
    assert not issubclass(errors.CascalError, (ValueError, TypeError, LookupError, RuntimeError))


#: Builtin exception classes that cascal never raises itself: it raises a CascalError subclass that
#: keeps the builtin as a base (``NotImplementedError`` of abstract methods is not listed).
BARE_BUILTINS = frozenset({"ValueError", "TypeError", "RuntimeError", "KeyError", "LookupError"})

PACKAGE = Path(errors.__file__).parent


def bare_raises(source: str) -> list[tuple[int, str]]:
    """``(line, class name)`` of every ``raise`` of a class in :data:`BARE_BUILTINS` in ``source``
    (called or not, spelled ``ValueError`` or ``builtins.ValueError``); a bare ``raise`` and a
    raise of a caught exception object are not counted."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "builtins":
            name = target.attr
        else:
            name = target.id if isinstance(target, ast.Name) else ""
        if name in BARE_BUILTINS:
            found.append((node.lineno, name))
    return found


def test_bare_raises_finds_builtin_raises_only():
    source = """
def f(x):
    if x == 1:
        raise ValueError(f"x: {x}")
    if x == 2:
        raise builtins.KeyError
    try:
        g()
    except TypeError as exc:
        raise exc
    except RuntimeError:
        raise
    raise DataError("x: bad")
"""
    assert bare_raises(source) == [(4, "ValueError"), (6, "KeyError")]


def test_no_module_raises_a_bare_builtin_error():
    """Every deliberate error is a CascalError: a new ``raise ValueError(...)`` anywhere in the
    package fails."""
    found = [
        f"{path.relative_to(PACKAGE).as_posix()}:{line}: raise {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name in bare_raises(path.read_text(encoding="utf-8"))
    ]
    assert not found, "raise a cascal.errors class instead:\n" + "\n".join(found)


def test_every_warning_class_is_a_cascal_warning_and_keeps_its_builtin_category():
    for cls, base in WARNING_BASES.items():
        assert issubclass(cls, errors.CascalWarning) and issubclass(cls, base), cls
    assert not issubclass(errors.CascalWarning, errors.CascalError)


def test_exception_chain_walks_causes_contexts_and_named_attributes_once():
    root = OSError("refused")
    try:
        try:
            raise root
        except OSError as inner:
            raise TimeoutError("slow") from inner
    except TimeoutError as caught:
        middle = caught
    wrapper = RuntimeError("wrapped")
    wrapper.cause = middle  # type: ignore[attr-defined]  # as Ray's task errors hold their cause
    assert list(errors.exception_chain(middle)) == [middle, root]
    assert list(errors.exception_chain(wrapper)) == [wrapper]
    assert list(errors.exception_chain(wrapper, also=("cause",))) == [wrapper, middle, root]
    loop_a, loop_b = ValueError("a"), ValueError("b")
    loop_a.__context__, loop_b.__context__ = loop_b, loop_a
    assert list(errors.exception_chain(loop_a)) == [loop_a, loop_b]  # a loop ends


def test_the_client_errors_that_reach_users_are_cascal_errors():
    from cascal.llm.client import RequestFailed, Stopped

    for cls in (RequestFailed, Stopped):
        assert issubclass(cls, errors.CascalError) and issubclass(cls, RuntimeError)


def test_old_import_paths_name_the_same_classes():
    import cascal.data
    import cascal.embedding
    import cascal.evaluation
    import cascal.llm
    import cascal.llm.client
    import cascal.llm.config
    import cascal.pipeline.generate
    import cascal.router
    import cascal.router.base
    import cascal.router.persistence
    import cascal.simulate
    import cascal.simulate.responder

    assert cascal.CascalError is errors.CascalError
    assert cascal.DataError is cascal.data.DataError is errors.DataError
    assert cascal.llm.ConfigError is cascal.llm.config.ConfigError is errors.ConfigError
    assert cascal.router.persistence.RouterFileError is errors.RouterFileError
    assert cascal.router.NotFittedError is cascal.router.base.NotFittedError is errors.NotFittedError
    assert cascal.llm.EndpointError is cascal.llm.client.EndpointError is errors.EndpointError
    assert cascal.pipeline.generate.GenerationError is errors.GenerationError
    assert cascal.evaluation.ProtocolError is errors.ProtocolError
    assert cascal.embedding.EmbeddingError is errors.EmbeddingError
    assert cascal.simulate.UnknownModelError is cascal.simulate.responder.UnknownModelError is errors.UnknownModelError


def test_library_errors_are_caught_by_their_old_builtin(tmp_path):
    from cascal.io import load_dataset
    from cascal.router import CascalRouter
    from cascal.simulate import SimWorld

    with pytest.raises(ValueError) as info:  # how callers caught it before cascal.errors
        load_dataset(tmp_path / "missing")
    assert type(info.value) is errors.DataError
    with pytest.raises(RuntimeError) as info:
        CascalRouter().route(np.zeros((1, 4), dtype=np.float32))
    assert type(info.value) is errors.NotFittedError
    with pytest.raises(LookupError) as info:
        SimWorld().generator("sim-generator-nobody")
    assert type(info.value) is errors.UnknownModelError


def test_wrong_types_closed_objects_and_failed_lookups_keep_their_builtin_too(tmp_path):
    from cascal.demo.results import DemoConfig, DemoResult
    from cascal.llm.cache import ResponseCache
    from cascal.llm.extract import find_choice

    with pytest.raises(TypeError) as info:
        find_choice(b"B")  # type: ignore[arg-type]
    assert type(info.value) is errors.ArgumentTypeError and str(info.value) == "text: expected str, got bytes"
    cache = ResponseCache(tmp_path / "cache.sqlite")
    cache.close()
    with pytest.raises(ValueError) as info:
        len(cache)
    assert type(info.value) is errors.ClosedError
    with pytest.raises(KeyError) as info:
        DemoResult(DemoConfig.for_mode(quick=True), scores=[]).score("CASCAL", "weak")
    assert type(info.value) is errors.NotFoundError
    assert str(info.value) == "no score for router 'CASCAL', generator 'weak', data 'raw'"  # not quoted


def test_an_unreachable_endpoint_names_itself_in_the_error_attributes():
    from cascal.llm.client import ChatClient
    from cascal.llm.config import ModelConfig, RetryPolicy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    cfg = ModelConfig(name="pool-a", base_url=url, model="model-a", timeout=1.0)

    async def ask() -> None:
        async with ChatClient(cfg, RetryPolicy(max_attempts=1)) as client:
            await client.complete([{"role": "user", "content": "hi"}])

    with pytest.raises(errors.EndpointError) as info:
        asyncio.run(ask())
    assert info.value.model_name == "pool-a" and info.value.base_url == url
    assert str(info.value).startswith(f"endpoint {url} (model 'pool-a', id 'model-a'): unreachable")


# ----------------------------------------------------------------------------- the command line
def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """``cascal ARGV`` in this process: (exit status, stderr lines)."""
    capsys.readouterr()
    status = main(list(argv))
    return status, capsys.readouterr().err.splitlines()


def dataset(folder: Path) -> Path:
    """A small valid dataset folder: 4 questions answered by 2 models, with embeddings."""
    data = ResponseMatrix(
        answers=np.array([[0, 1], [1, 1], [0, 0], [2, 0]], dtype=np.int8),
        n_options=np.array([4, 4, 4, 4]),
        subjects=np.array(["a", "a", "b", "b"]),
        model_names=["m1", "m2"],
        questions=["q one", "q two", "q three", "q four"],
        options=[list("wxyz")] * 4,
    )
    save_dataset(data, folder)
    return folder


def test_cli_reports_a_data_error_as_one_line(tmp_path, capsys):
    folder = dataset(tmp_path / "ds")
    lines = (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-5]  # line 2 is cut short: not JSON
    (folder / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, err = run_cli(capsys, "train", str(folder), "--out", str(tmp_path / "r.cascal"))
    assert status == 2
    assert err == [err[0]] and err[0].startswith("error: ")
    assert f"{folder / 'questions.jsonl'}:2: invalid JSON" in err[0]
    assert not (tmp_path / "r.cascal").exists()


def test_cli_reports_a_config_error_as_one_line(tmp_path, capsys):
    folder = dataset(tmp_path / "ds")
    pool = tmp_path / "pool.yaml"
    pool.write_text("models:\n  - name: a\n    model: [unclosed\n", encoding="utf-8")  # invalid YAML
    status, err = run_cli(capsys, "answer", str(folder), "--pool", str(pool), "--no-progress")
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: pool.yaml: ")
    assert not (folder / "answer_cache.sqlite").exists()  # refused before any work


def test_cli_reports_a_router_file_error_as_one_line(tmp_path, capsys):
    router_file = tmp_path / "router.cascal"
    router_file.write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    status, err = run_cli(capsys, "route", str(router_file), "a question")
    assert status == 2
    assert len(err) == 1 and err[0].startswith(f"error: {router_file}: ")


def test_cli_reports_a_file_it_cannot_write_with_its_name(tmp_path, capsys):
    target = tmp_path / "missing-folder" / "pool.yaml"
    status, err = run_cli(capsys, "simulate", "--port", "0", "--write-pool", str(target))
    assert status == 2
    assert err == [f"error: {target}: No such file or directory"]


def test_cli_reports_a_file_it_cannot_read_with_its_name(tmp_path, capsys):
    folder = tmp_path / "ds"
    (folder / "questions.jsonl").mkdir(parents=True)  # there, but not a readable file
    status, err = run_cli(capsys, "embed", str(folder), "--model", "hashing-8", "--no-progress")
    assert status == 2
    assert err == [f"error: {folder / 'questions.jsonl'}: Is a directory"]


def test_cli_exits_1_for_an_endpoint_failure(tmp_path, capsys, monkeypatch):
    import cascal.pipeline.answer

    def endpoint_down(*args: object, **kwargs: object) -> None:
        raise errors.EndpointError("endpoint http://127.0.0.1:9/v1 (model 'a'): unreachable", model_name="a")

    monkeypatch.setattr(cascal.pipeline.answer, "answer_dataset", endpoint_down)
    pool = tmp_path / "pool.yaml"
    pool.write_text(json.dumps({"models": [{"name": "a", "model": "m", "base_url": "http://127.0.0.1:9/v1"}]}))
    status, err = run_cli(capsys, "answer", str(dataset(tmp_path / "ds")), "--pool", str(pool), "--no-progress")
    assert status == 1
    assert err == ["error: endpoint http://127.0.0.1:9/v1 (model 'a'): unreachable"]


def test_a_bug_inside_a_command_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    import cascal.pipeline.train

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cascal.pipeline.train, "train_router", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["train", str(dataset(tmp_path / "ds")), "--out", str(tmp_path / "r.cascal")])
    assert "error:" not in capsys.readouterr().err


def test_a_plain_value_error_is_a_bug_too(tmp_path, capsys, monkeypatch):
    """Commands do not catch ValueError wholesale: only CascalErrors are the user's problem."""
    import cascal.pipeline.filter

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal shape mismatch")

    monkeypatch.setattr(cascal.pipeline.filter, "filter_dataset", broken)
    with pytest.raises(ValueError, match="internal shape mismatch"):
        main(["filter", str(dataset(tmp_path / "ds")), "--out", str(tmp_path / "f")])
    assert "error:" not in capsys.readouterr().err
