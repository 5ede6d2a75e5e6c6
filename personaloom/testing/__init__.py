"""Test doubles for personaloom: a scripted OpenAI-compatible endpoint that plays its agents,
and the small spec (``specs.story_spec``) the tests and benchmarks run against it."""
