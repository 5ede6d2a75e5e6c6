"""Prompt templates, one file per agent role: ``<role>.md.j2``.

A template is Jinja, rendered by a sandboxed environment with ``StrictUndefined`` (a typo in a
variable name fails loudly instead of rendering an empty string). It may start with YAML
front-matter between ``---`` lines holding call defaults (for example ``temperature``). The
template's *source* is split into chat messages at lines that are exactly ``[system]``,
``[user]`` or ``[assistant]``, and each message is rendered on its own: what a variable
renders to can never start or end a message, whatever lines it holds.

Untrusted text (corpus texts, persona descriptions, drafts) goes through the ``data`` filter,
which strips our delimiter tags so a text cannot close its own data slot.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ROLE_LINE = re.compile(r"^\[(system|user|assistant)\]\s*$", re.MULTILINE)
_DELIMITER = re.compile(r"</?(text|persona|draft|neighbour|feedback|example)>", re.IGNORECASE)


def _data(value: Any) -> str:
    return _DELIMITER.sub("", str(value)).strip()


_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
)
_ENV.filters["data"] = _data


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> tuple[tuple[str, Template], ...]:
    """A template's messages, each role with its compiled body: Jinja's compile (and the
    front matter's YAML) once per template text, not on every call."""
    return tuple((role, _ENV.from_string(body)) for role, body in _sections(source))


def _sections(source: str) -> list[tuple[str, str]]:
    """``(role, template text)`` per message of a template's body, split at its role lines."""
    parts = _ROLE_LINE.split(_split_front_matter(source)[1])
    if parts[0].strip():
        raise ValueError("text before the first [system]/[user] line")
    sections = list(zip(parts[1::2], parts[2::2], strict=True))
    if not sections:
        raise ValueError("no [system] or [user] section")
    return sections


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template: its name, source text, hash (for traces) and front-matter defaults."""

    name: str
    source: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Render to chat messages ``[{"role": ..., "content": ...}]``."""
        return [
            {"role": role, "content": body.render(**variables).strip()}
            for role, body in _compile(self.source)
        ]

    @property
    def body(self) -> str:
        return _split_front_matter(self.source)[1]


def _split_front_matter(source: str) -> tuple[dict[str, Any], str]:
    if source.startswith("---\n"):
        end = source.find("\n---\n", 4)
        if end != -1:
            meta = yaml.safe_load(source[4:end]) or {}
            if not isinstance(meta, dict):
                raise ValueError("prompt front-matter must be a mapping")
            return meta, source[end + 5 :]
    return {}, source


def load_template(role: str, override: str | Path | None = None) -> PromptTemplate:
    """The template for ``role``: the packaged one, or ``override`` (a file path) if given."""
    if override is not None:
        path = Path(override)
        source, name = path.read_text(encoding="utf-8"), path.name
    else:
        name = f"{role}.md.j2"
        source = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    defaults, _ = _split_front_matter(source)
    template = PromptTemplate(name=name, source=source, defaults=defaults)
    try:  # fail now on a syntax error or a missing role line, not mid-run
        _compile(source)
    except (ValueError, TemplateSyntaxError) as exc:
        raise ValueError(f"prompt {name}: {exc}") from None
    return template
