"""Which endpoint and model each role uses.

Precedence, highest first: command-line flags, the spec (``models.<role>`` over
``models.default``), the environment (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), and last the
embedded local model, used when nothing names an endpoint or a key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pydantic import SecretStr

from personaloom.errors import ConfigError
from personaloom.llm import Endpoint
from personaloom.spec import ROLES, Spec

DEFAULT_REMOTE_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"


@dataclass(frozen=True)
class Overrides:
    """Command-line settings that win over the spec."""

    base_url: str | None = None
    model: str | None = None
    embeddings: str | None = None  # "local" | "openai"
    chroma_url: str | None = None  # the novelty store's server (over novelty.store)
    workers: int | None = None  # draft work on this many Ray actors (graphs/workers.py)
    ray_address: str | None = None  # an existing Ray cluster to run them on


def _api_key(
    explicit: SecretStr | None, key_env: str | None, env: Mapping[str, str]
) -> SecretStr | None:
    if explicit is not None:
        return explicit
    if key_env:
        if not env.get(key_env):
            raise ConfigError(f"api_key_env names {key_env}, which is not set in the environment")
        return SecretStr(env[key_env])
    value = env.get("OPENAI_API_KEY")
    return SecretStr(value) if value else None


def resolve_endpoints(
    spec: Spec, overrides: Overrides | None = None, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Endpoint], bool]:
    """Endpoints per role (and 'default'), and whether the embedded local model is needed.

    Roles that need the local model get ``base_url=None`` here; the runner fills it in once
    the local server is up (see ``with_local``).
    """
    env = os.environ if env is None else env
    overrides = overrides or Overrides()
    endpoints: dict[str, Endpoint] = {}
    needs_local = False
    for role in ("default", *ROLES):
        cfg = spec.models.default if role == "default" else spec.models.for_role(role)
        base_url = overrides.base_url or cfg.base_url or env.get("OPENAI_BASE_URL") or None
        key = _api_key(cfg.api_key, cfg.api_key_env, env)
        local = base_url is None and key is None
        needs_local |= local and role != "default"
        endpoints[role] = Endpoint(
            model=overrides.model or cfg.model or ("local" if local else DEFAULT_REMOTE_MODEL),
            base_url=base_url,
            api_key=key,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            timeout=cfg.timeout or (300.0 if local else 60.0),
            max_retries=3 if cfg.max_retries is None else cfg.max_retries,
            strategy=cfg.structured_output or ("json_object" if local else "auto"),
            embedded=local,
        )
    return endpoints, needs_local


def with_local(
    endpoints: dict[str, Endpoint], base_url: str | None, model: str
) -> dict[str, Endpoint]:
    """Mark every role without an endpoint as served by the embedded model.

    ``base_url`` may be None: the LLM layer then starts the server on first use.
    """
    return {
        role: replace(e, base_url=base_url, model=model, api_key=SecretStr("local"), embedded=True)
        if e.embedded
        else e
        for role, e in endpoints.items()
    }


def embeddings_provider(spec: Spec, overrides: Overrides, local_available: bool) -> str:
    provider = overrides.embeddings or spec.embeddings.provider
    if provider:
        return provider
    if local_available:
        return "local"
    return "openai"


def model_name(endpoint: Endpoint) -> str:
    """The model name calls to ``endpoint`` are traced and priced under."""
    if endpoint.embedded:
        from personaloom.local.server import MODEL_ALIAS

        return MODEL_ALIAS
    return endpoint.model


def check_prices(spec: Spec, endpoints: dict[str, Endpoint]) -> list[tuple[str, str]]:
    """Problems with the spec's ``prices`` for the models the roles resolved to.

    A price must name a model the spec can call: one a role resolves to now, or one named in
    ``models`` (the environment may point a run elsewhere today). With ``budget.max_cost``,
    every model the run calls needs a price, except the embedded one, which is free.
    """
    used: dict[str, list[str]] = {}
    for role in ROLES:
        used.setdefault(model_name(endpoints[role]), []).append(role)
    named = {cfg.model for cfg in (spec.models.default, *(getattr(spec.models, r) for r in ROLES))}
    problems = []
    for model in spec.prices:
        if model not in used and model not in named:
            roles = "; ".join(f"{m!r} ({', '.join(rs)})" for m, rs in used.items())
            problems.append(
                (
                    f"prices.{model}",
                    f"no role calls a model named {model!r}; the roles call {roles}. "
                    "Prices are per chat model, named as in models.*.model "
                    "(embedding calls are not priced)",
                )
            )
    if spec.budget.max_cost is not None:
        free = {model_name(e) for role, e in endpoints.items() if role in ROLES and e.embedded}
        for model, callers in used.items():
            if model not in spec.prices and model not in free:
                problems.append(
                    (
                        "budget.max_cost",
                        f"needs a price for every model the run calls: add prices.{model} "
                        f"(called by {', '.join(callers)})",
                    )
                )
    return problems
