"""parse_chat / parse_route: every body the gateway refuses, with the status, message, ``param`` and
``code`` a client sees, and what an accepted body parses into."""

from __future__ import annotations

import json

import pytest

from cascal.errors import CascalError
from cascal.serve.errors import APIError
from cascal.serve.protocol import ChatRequest, parse_chat, parse_route, query_text
from cascal.serve.settings import GatewaySettings

POOL = ["m1", "m2", "m3", "m4"]
USER = [{"role": "user", "content": "Which enzyme unwinds DNA?"}]


def chat(body, headers=None, *, priced=False, **settings) -> ChatRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_chat(raw, headers or {}, settings=GatewaySettings(**settings), pool=POOL, priced=priced)


def refusal(body, headers=None, **kwargs) -> APIError:
    with pytest.raises(APIError) as info:
        chat(body, headers, **kwargs)
    return info.value


@pytest.mark.parametrize(
    "body, status, message, param, code",
    [
        (b"{not json", 400, "the request body is not valid JSON", None, "invalid_json"),
        (b"\xff\xfe{", 400, "the request body is not valid JSON", None, "invalid_json"),
        (b"", 400, "the request body is not valid JSON", None, "invalid_json"),
        (b"[1, 2]", 400, "the request body must be a JSON object", None, "invalid_json"),
        (b'"cascal"', 400, "the request body must be a JSON object", None, "invalid_json"),
        (
            {"model": "cascal"},
            400,
            "messages: required, a non-empty list of chat messages",
            "messages",
            "missing_messages",
        ),
        (
            {"model": "cascal", "messages": []},
            400,
            "messages: required, a non-empty list of chat messages",
            "messages",
            "missing_messages",
        ),
        (
            {"model": "cascal", "messages": "hello"},
            400,
            "messages: required, a non-empty list of chat messages",
            "messages",
            "missing_messages",
        ),
        (
            {"model": "cascal", "messages": [{"role": "user"}]},
            400,
            "messages[0]: each message needs a string role and a content",
            "messages",
            None,
        ),
        (
            {"model": "cascal", "messages": [*USER, {"role": 3, "content": "x"}]},
            400,
            "messages[1]: each message needs a string role and a content",
            "messages",
            None,
        ),
        (
            {"model": "cascal", "messages": [*USER, "hello"]},
            400,
            "messages[1]: each message needs a string role and a content",
            "messages",
            None,
        ),
        ({"messages": USER}, 400, "model: required string", "model", None),
        ({"model": "", "messages": USER}, 400, "model: required string", "model", None),
        ({"model": 7, "messages": USER}, 400, "model: required string", "model", None),
        (
            {"model": "cascal-vote-9", "messages": USER},
            400,
            "model: 'cascal-vote-9' asks 9 models; the pool has 4",
            "model",
            None,
        ),
        (
            {"model": "cascal-vote-0", "messages": USER},
            400,
            "model: 'cascal-vote-0' asks 0 models; the pool has 4",
            "model",
            None,
        ),
        (
            {"model": "gpt-nonexistent", "messages": USER},
            404,
            "model 'gpt-nonexistent' not found: ask for 'cascal', 'cascal-vote-K' or a pool model (m1, m2, m3, m4)",
            "model",
            "model_not_found",
        ),
        (
            {"model": "cascal", "messages": [{"role": "user", "content": "  "}]},
            400,
            "messages: the last user message has no text to route on",
            "messages",
            None,
        ),
        (
            {"model": "cascal", "messages": [{"role": "system", "content": "be brief"}]},
            400,
            "messages: the last user message has no text to route on",
            "messages",
            None,
        ),
        (
            {"model": "cascal", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            400,
            "messages: the last user message has no text to route on",
            "messages",
            None,
        ),
        (
            {"model": "cascal-vote", "messages": USER, "stream": True},
            400,
            "stream: not supported with cascal-vote (the vote needs whole replies)",
            "stream",
            None,
        ),
    ],
)
def test_parse_chat_refusals(body, status, message, param, code):
    error = refusal(body)
    assert (error.status, error.message, error.param, error.code) == (status, message, param, code)
    assert error.kind == "invalid_request_error" and isinstance(error, CascalError)
    assert error.body() == {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def test_parse_chat_refuses_in_the_order_a_client_meets_the_fields():
    # malformed messages win over a missing model, a missing model over an unknown one, ...
    assert refusal({"messages": []}).param == "messages"
    assert refusal({"model": "cascal-vote-9", "messages": [{"role": "user", "content": ""}]}).param == "model"
    assert refusal({"model": "nope", "messages": [{"role": "user", "content": ""}]}).status == 404
    # ... no text over a bad cost weight, a bad cost weight over a streamed vote
    no_text = {"model": "cascal", "messages": [{"role": "user", "content": ""}], "cascal_cost_weight": -1}
    assert refusal(no_text).param == "messages"
    streamed_vote = {"model": "cascal-vote", "messages": USER, "stream": True, "cascal_cost_weight": -1}
    assert refusal(streamed_vote).param == "cascal_cost_weight"


@pytest.mark.parametrize(
    "field, header, message",
    [
        (-1, None, "cascal_cost_weight: must be a finite number >= 0, got -1"),
        ("cheap", None, "cascal_cost_weight: must be a finite number >= 0, got 'cheap'"),
        (True, None, "cascal_cost_weight: must be a finite number >= 0, got True"),
        (None, "nan", "x-cascal-cost-weight: must be a finite number >= 0, got nan"),
        (None, "inf", "x-cascal-cost-weight: must be a finite number >= 0, got inf"),
        (None, "lots", "x-cascal-cost-weight: must be a finite number >= 0, got 'lots'"),
        (None, "-0.5", "x-cascal-cost-weight: must be a finite number >= 0, got -0.5"),
    ],
)
def test_parse_chat_refuses_bad_cost_weights(field, header, message):
    body = {"model": "cascal", "messages": USER, **({} if field is None else {"cascal_cost_weight": field})}
    error = refusal(body, None if header is None else {"x-cascal-cost-weight": header}, priced=True)
    assert (error.status, error.message, error.param) == (400, message, message.split(":")[0])


def test_cost_weight_needs_a_priced_router_and_names_where_it_came_from():
    body = {"model": "cascal", "messages": USER, "cascal_cost_weight": 2}
    error = refusal(body)
    assert error.message == "cascal_cost_weight: the router has no expected costs (train it with --prices)"
    assert error.param == "cascal_cost_weight"
    error = refusal({"model": "cascal", "messages": USER}, {"x-cascal-cost-weight": "2"})
    assert error.param == "x-cascal-cost-weight" and "no expected costs" in error.message
    # the body field wins over the header, and is the one named
    both = refusal(body, {"x-cascal-cost-weight": "0"})
    assert both.param == "cascal_cost_weight"
    # 0 is the router's own weight: fine without prices
    assert chat({**body, "cascal_cost_weight": 0}).cost_weight == 0.0


def test_parse_chat_of_accepted_bodies():
    routed = chat({"model": "cascal", "messages": USER, "temperature": 0, "cascal_cost_weight": 3}, priced=True)
    assert routed.routed and routed.text == USER[0]["content"] and routed.cost_weight == 3.0
    assert routed.vote is None and not routed.stream
    # the cost field is taken out of what goes upstream; everything else stays as sent
    assert routed.body == {"model": "cascal", "messages": USER, "temperature": 0}
    by_header = chat({"model": "cascal", "messages": USER}, {"x-cascal-cost-weight": "0.25"}, priced=True)
    assert by_header.cost_weight == 0.25
    streamed = chat({"model": "cascal", "messages": USER, "stream": True})
    assert streamed.stream and streamed.routed
    # a pool model by name is not routed (no text needed, none embedded)
    named = chat({"model": "m2", "messages": [{"role": "user", "content": ""}], "cascal_cost_weight": 1})
    assert not named.routed and named.text == "" and named.cost_weight is None and named.vote is None
    assert "cascal_cost_weight" not in named.body
    # a bare vote asks top_k models (at most the pool), a numbered one K
    assert chat({"model": "cascal-vote", "messages": USER}, top_k=3).vote == 3
    assert chat({"model": "cascal-vote", "messages": USER}, top_k=9).vote == 4
    assert chat({"model": "cascal-vote-2", "messages": USER}).vote == 2
    # the text: the last user message (text parts joined), or the whole conversation
    conversation = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        },
    ]
    assert chat({"model": "cascal", "messages": conversation}).text == "a\nb"
    whole = chat({"model": "cascal", "messages": conversation}, whole_conversation=True)
    assert whole.text == "be brief\nfirst\nok\na\nb"
    with pytest.raises(APIError, match="the conversation has no text"):
        query_text([{"role": "user", "content": ""}], whole_conversation=True)


def route(body, headers=None, *, priced=False, **settings):
    return parse_route(json.dumps(body).encode(), headers or {}, settings=GatewaySettings(**settings), priced=priced)


@pytest.mark.parametrize(
    "body, message, param",
    [
        ({"input": ""}, "input: must be a non-empty string", "input"),
        ({"input": "   "}, "input: must be a non-empty string", "input"),
        ({"input": []}, "give messages (a chat) or input (a non-empty string or list of strings)", "input"),
        ({"input": ["a", " "]}, "give messages (a chat) or input (a non-empty string or list of strings)", "input"),
        ({"input": 3}, "give messages (a chat) or input (a non-empty string or list of strings)", "input"),
        ({}, "give messages (a chat) or input (a non-empty string or list of strings)", "input"),
        ({"messages": []}, "messages: required, a non-empty list of chat messages", "messages"),
        (
            {"input": "x", "cascal_cost_weight": -2},
            "cascal_cost_weight: must be a finite number >= 0, got -2",
            "cascal_cost_weight",
        ),
    ],
)
def test_parse_route_refusals(body, message, param):
    with pytest.raises(APIError) as info:
        route(body)
    assert (info.value.status, info.value.message, info.value.param) == (400, message, param)


def test_parse_route_of_accepted_bodies():
    one = route({"input": "a question"})
    assert (one.texts, one.many, one.cost_weight) == (["a question"], False, None)
    many = route({"input": ["a", "b"], "cascal_cost_weight": 0.5}, priced=True)
    assert (many.texts, many.many, many.cost_weight) == (["a", "b"], True, 0.5)
    conversation = route({"messages": [*USER, {"role": "assistant", "content": "helicase"}]})
    assert (conversation.texts, conversation.many) == ([USER[0]["content"]], False)
    with pytest.raises(APIError, match="not valid JSON"):
        parse_route(b"{", {}, settings=GatewaySettings(), priced=False)
