"""Structured output strategies: how a pydantic schema travels to an endpoint and back.

Endpoints differ: OpenAI takes ``json_schema``; llama.cpp's Python server rejects that but
accepts ``json_object`` with a ``schema`` and constrains decoding to it; some servers only do
tool calling; some do none of these, so the schema goes into the prompt and the reply is
parsed (with one repair attempt, done by the client). ``auto`` probes in that order.
"""

from __future__ import annotations

import json
import re
import weakref
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

Strategy = Literal["json_schema", "json_object", "tools", "prompt"]
PROBE_ORDER: tuple[Strategy, ...] = ("json_schema", "json_object", "tools", "prompt")

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class ParseError(ValueError):
    """A reply that does not parse to the schema (including an empty one)."""


_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()


def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, built once per model class (a call needs it three times: for
    the request, the cache key and the trace). Treat it as read-only."""
    found = _SCHEMAS.get(schema)
    if found is None:
        found = _SCHEMAS[schema] = schema.model_json_schema()
    return found


def request_options(
    strategy: Strategy, schema: type[BaseModel], messages: list[dict[str, str]]
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Messages and invoke kwargs for one strategy.

    ``response_format`` goes through ``extra_body`` so that langchain-openai sends it verbatim
    instead of switching to its own parsing path.
    """
    spec = json_schema(schema)
    name = spec.get("title", schema.__name__)
    if strategy == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": spec}}
        return messages, {"extra_body": {"response_format": fmt}}
    if strategy == "json_object":
        return messages, {
            "extra_body": {"response_format": {"type": "json_object", "schema": spec}}
        }
    if strategy == "tools":
        tool = {"type": "function", "function": {"name": name, "parameters": spec}}
        choice = {"type": "function", "function": {"name": name}}
        return messages, {"tools": [tool], "tool_choice": choice}
    instructions = (
        "Reply with one JSON object only, no prose and no code fence, matching this JSON "
        f"schema:\n{json.dumps(spec, ensure_ascii=False)}"
    )
    return [*messages, {"role": "system", "content": instructions}], {}


def raw_reply(content: Any, tool_calls: list[dict[str, Any]]) -> str:
    """The reply text that parsing works on and traces record."""
    if tool_calls:
        return json.dumps(tool_calls[0].get("args", {}), ensure_ascii=False)
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return content or ""


def extract_json(text: str) -> Any:
    text = text.strip()
    if not text:
        raise ParseError("empty reply")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    # strict=False: grammar-constrained local models emit raw newlines inside strings.
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            try:
                return json.loads(text[start : end + 1], strict=False)
            except json.JSONDecodeError:
                pass
    raise ParseError(f"reply is not JSON: {text[:120]!r}")


def parse(text: str, schema: type[BaseModel]) -> BaseModel:
    data = extract_json(text)
    if not isinstance(data, dict) or not data:
        raise ParseError(f"expected a JSON object with fields, got {str(data)[:80]!r}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ParseError(f"does not match the schema: {problems}") from None


def repair_message(error: str) -> dict[str, str]:
    return {
        "role": "user",
        "content": f"Your reply could not be used ({error}). Reply again with only the "
        "JSON object, with every field filled in.",
    }
