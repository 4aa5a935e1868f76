"""Schemathesis hooks for tests/test_api_fuzz.py (loaded with SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.check
def client_errors_are_explained_in_json(ctx, response, case):
    """Every 4xx answers a JSON body with a ``detail``, so the caller learns what was wrong.
    A HEAD answers a GET's headers without its body: its content type is checked, not a body."""
    if 400 <= response.status_code < 500:
        if not response.headers.get("content-type", [""])[0].startswith("application/json"):
            raise AssertionError(
                f"{response.status_code} without a JSON body: "
                f"{response.headers.get('content-type')}"
            )
        if case.method.upper() == "HEAD":
            return
        body = response.json()
        if not (isinstance(body, dict) and body.get("detail")):
            raise AssertionError(f"{response.status_code} JSON body has no detail: {body!r}")
