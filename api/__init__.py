"""Relance's HTTP API (FastAPI): management endpoints behind an API key, public tracking
endpoints."""
