"""Test doubles for personaloom: a scripted OpenAI-compatible endpoint that plays its agents."""
