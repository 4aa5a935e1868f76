"""An email's MIME (a text part and an HTML part, as alternatives) written straight to the bytes
that go over SMTP, for the common message: every header plain ASCII, no attachment.

The ``email`` package parses each header when it is set and folds it again when the message is
written out, and for a long value it cannot break (the List-Unsubscribe URLs, a few hundred
characters of signed token) it falls back to RFC 2047 encoded words, which mail clients do not
read as a one-click unsubscribe link. A broadcast writes tens of thousands of such messages a
run: here the headers, once rendered (one line each, known ASCII), are written as they are,
folded at their spaces only, and the parts are quoted-printable in UTF-8. ``build`` answers None
for anything else (a non-ASCII name, subject or address, an attachment, a value that reads as
an encoded word): that message is built by the ``email`` package, as before.
"""

from __future__ import annotations

import binascii
import uuid

MAX_LINE = 78  # a header line's length where it can be folded (RFC 5322 2.1.1)
MAX_WORD = 900  # an unbreakable run longer than this goes through the email package (998 max)


def fold(name: str, value: str) -> str | None:
    """``Name: value`` folded at its spaces into lines of at most MAX_LINE where a space allows;
    None when the value cannot be written as it is (not ASCII, a control character, something
    that reads as an encoded word, runs of spaces)."""
    if (
        not value.isascii()
        or not value.isprintable()  # a line break, a tab, another control character
        or "=?" in value
        or "  " in value
        or value != value.strip()
    ):
        return None
    words = value.split(" ")
    if any(len(word) > MAX_WORD for word in words):
        return None
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > MAX_LINE and line != f"{name}:":
            lines.append(line)
            line = ""
        line += f" {word}"
    lines.append(line)
    return "\r\n".join(lines)


def _part(subtype: str, content: str) -> bytes:
    lines = content.encode("utf-8").splitlines()
    body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii") + body.replace(b"\n", b"\r\n")


def build(headers: list[tuple[str, str]], text: str, html: str) -> bytes | None:
    """The message's bytes (CRLF line ends, as sent), or None when one of its headers needs the
    ``email`` package (see the module's docstring)."""
    written = []
    for name, value in headers:
        line = fold(name, value)
        if line is None:
            return None
        written.append(line)
    # Quoted-printable writes every "=" as "=3D": a boundary starting with "==" cannot occur in
    # the parts.
    boundary = f"==============={uuid.uuid4().hex}=="
    head = "\r\n".join(
        [
            *written,
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            "",
        ]
    )
    separator = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        [
            head.encode("ascii"),
            separator,
            _part("plain", text),
            b"\r\n",
            separator,
            _part("html", html),
            b"\r\n",
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )
