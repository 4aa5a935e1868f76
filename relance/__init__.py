"""Relance: code-first marketing automation. Shared core: settings, database, models, tokens."""
