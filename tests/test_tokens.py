"""One token, one string: a signed link is accepted only as it was written into the email.

itsdangerous on its own accepts other spellings of a genuine token — padding, characters
outside base64 that its decoder drops, the unused low bits of the signature's last character —
and one of them granted a real double opt-in. Dedupe and replay rules keyed on the token string
rely on there being exactly one spelling.
"""

from __future__ import annotations

import pytest

from relance.domain.tokens import KINDS, TokenSigner, TrackingToken

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spellings(token: str) -> dict[str, str]:
    """Ways of writing ``token`` that itsdangerous alone accepts as the same token."""
    last = ALPHABET.index(token[-1])
    return {
        "padding": token + "=",
        "double padding": token + "==",
        "a %FF byte, as a server decodes it": token + "\ufffd",
        "a raw 0xFF character": token + "\xff",
        "an emoji at the end": token + "\U0001f600",
        "an emoji in the signature": token[:-3] + "\U0001f600" + token[-3:],
        "the signature's unused low bit flipped": token[:-1] + ALPHABET[last ^ 1],
        "a space in the signature": token[:-3] + " " + token[-3:],
    }


def token_of(kind: str) -> TrackingToken:
    url = (
        "https://example.com/guides/first-journey?" + "x" * 200 if kind == "click" else None
    )  # long: compressed
    return TrackingToken(kind, "message-1", "lead-1", "welcome-lead-1", url=url)


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_spelling_that_was_signed_is_accepted(kind: str):
    signer = TokenSigner("test-secret", max_age_seconds=3600)
    token = signer.sign(token_of(kind))
    assert signer.verify(kind, token) == token_of(kind)
    for variant, value in other_spellings(token).items():
        assert value != token
        assert signer.verify(kind, value) is None, variant


def test_compressed_tokens_keep_their_leading_dot():
    """A long click URL is compressed (the token starts with "."); that spelling is the signed
    one."""
    signer = TokenSigner("test-secret", max_age_seconds=3600)
    token = signer.sign(token_of("click"))
    assert token.startswith(".")
    assert signer.verify("click", token) is not None
    assert signer.verify("click", token.lstrip(".")) is None
    assert signer.verify("click", "." + token) is None
