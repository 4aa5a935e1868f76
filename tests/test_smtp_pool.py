"""Email goes over reused SMTP connections (relance/services/smtp.py), to the real dev mail sink:
several messages a connection, a connection the server closed replaced without losing or
doubling a message, the server's answers on a kept connection taken as they are."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import pytest

from relance.contracts.sending import SendFailure
from relance.dev.devsink import DROP_AFTER_ACCEPT, DevSink
from relance.domain.settings import Settings
from relance.services.smtp import SmtpPool


def settings_for(sink: DevSink, **knobs) -> Settings:
    return Settings(
        _env_file=None, smtp_host="127.0.0.1", smtp_port=sink.smtp_port, secret_key="t", **knobs
    )


def message(n: int) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = "Relance <hello@relance.localhost>"
    mime["To"] = f"lead{n}@example.com"
    mime["Subject"] = f"message {n}"
    mime["Message-ID"] = f"<pool-test-{n}@relance.localhost>"
    mime.set_content(f"message number {n}")
    return mime


async def send(pool: SmtpPool, *numbers: int) -> None:
    for n in numbers:
        await asyncio.to_thread(pool.deliver, message(n), f"lead{n}@example.com")


def subjects(sink: DevSink) -> list[str]:
    return [mail.subject for mail in sink.mails]


async def test_several_messages_go_over_one_connection():
    async with DevSink(smtp_port=0, http_port=0) as sink:
        pool = SmtpPool(settings_for(sink))
        await send(pool, 1, 2, 3, 4, 5)
        pool.close()
    assert subjects(sink) == [f"message {n}" for n in range(1, 6)]
    assert len({mail.peer for mail in sink.mails}) == 1  # one client address and port
    assert pool.opened == 1


async def test_a_connection_is_retired_after_its_messages_and_its_age():
    async with DevSink(smtp_port=0, http_port=0) as sink:
        pool = SmtpPool(settings_for(sink, smtp_connection_max_messages=2))
        await send(pool, 1, 2, 3, 4, 5)
        aged = SmtpPool(settings_for(sink, smtp_connection_max_age_seconds=0))
        await send(aged, 6, 7)
    assert [len({m.peer for m in sink.mails[a:b]}) for a, b in ((0, 2), (2, 4), (4, 5))] == [1] * 3
    assert len({mail.peer for mail in sink.mails[:5]}) == 3 and pool.opened == 3
    assert sink.mails[5].peer != sink.mails[6].peer and aged.opened == 2


async def test_a_connection_the_server_closed_is_replaced_without_losing_or_doubling_a_message():
    """The mail server restarts between two messages (as its idle timeout would close a kept
    connection): the next message finds the kept connection closed before anything of it went
    out, and goes over a new one, once."""
    async with DevSink(smtp_port=0, http_port=0) as before:
        pool = SmtpPool(settings_for(before))
        await send(pool, 1)
    async with DevSink(smtp_port=before.smtp_port, http_port=0) as after:
        await send(pool, 2, 3)
    assert subjects(before) == ["message 1"]
    assert subjects(after) == ["message 2", "message 3"]
    assert len({mail.peer for mail in after.mails}) == 1 and pool.opened == 2


async def test_a_refusal_on_a_kept_connection_is_the_servers_answer_not_tried_again():
    """A 4xx or 5xx for the message itself is not a closed connection: the send fails as it
    would on a new connection (the ledger retries or fails it), and the next message goes out."""
    async with DevSink(smtp_port=0, http_port=0) as sink:
        pool = SmtpPool(settings_for(sink))
        await send(pool, 1)
        sink.fail_next("451 4.3.0 Try again later", "550 5.1.1 No such mailbox")
        with pytest.raises(SendFailure) as later:
            await send(pool, 2)
        with pytest.raises(SendFailure) as never:
            await send(pool, 3)
        await send(pool, 4)
    assert not later.value.permanent and "451" in later.value.reason
    assert never.value.permanent and "550" in never.value.reason
    assert subjects(sink) == ["message 1", "message 4"]


async def test_a_kept_connection_dropped_after_the_message_went_out_is_maybe_delivered():
    """Accepted, then the connection drops before the answer: the send ledger must know the
    message may have arrived (it resends under the same Message-ID); the pool does not resend
    it on its own."""
    async with DevSink(smtp_port=0, http_port=0) as sink:
        pool = SmtpPool(settings_for(sink))
        await send(pool, 1)
        sink.fail_next(DROP_AFTER_ACCEPT)
        with pytest.raises(SendFailure) as dropped:
            await send(pool, 2)
        await send(pool, 3)
    assert dropped.value.maybe_delivered
    assert subjects(sink) == ["message 1", "message 2", "message 3"]  # message 2 once


async def test_threads_sending_at_once_share_the_connections_and_every_message_goes_out_once():
    async with DevSink(smtp_port=0, http_port=0) as sink:
        pool = SmtpPool(settings_for(sink))

        def one(n: int) -> None:
            pool.deliver(message(n), f"lead{n}@example.com")

        with ThreadPoolExecutor(max_workers=6) as threads:
            await asyncio.gather(*(asyncio.wrap_future(threads.submit(one, n)) for n in range(60)))
        pool.close()
    assert sorted(mail.message["Message-ID"] for mail in sink.mails) == sorted(
        f"<pool-test-{n}@relance.localhost>" for n in range(60)
    )
    assert pool.opened <= 6 and len({mail.peer for mail in sink.mails}) == pool.opened
