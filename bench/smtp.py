"""Messages per second over the pooled SMTP connections (relance/services/smtp.py, what every
send uses) vs a plain smtplib loop on one connection, to the dev mail sink; with, for scale, one
connection per message (what each send did before the pool) and the pool shared by threads
(activities run in a thread pool)."""

from __future__ import annotations

import asyncio
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

from bench.results import Row
from bench.stack import Stack, say
from relance.services.smtp import SmtpPool

THREADS = 8


def message(n: int) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = "Relance <hello@relance.localhost>"
    mime["To"] = f"lead{n}@example.com"
    mime["Subject"] = f"benchmark message {n}"
    mime["Message-ID"] = f"<bench-{n}@relance.localhost>"
    mime.set_content("A few lines of text, as a journey's email has.\n" * 20)
    mime.add_alternative("<p>" + "A few lines of HTML. " * 40 + "</p>", subtype="html")
    return mime


def plain_loop(stack: Stack, messages: list[EmailMessage]) -> None:
    with smtplib.SMTP(stack.settings.smtp_host, stack.settings.smtp_port) as smtp:
        for mime in messages:
            smtp.send_message(mime, to_addrs=[mime["To"]])


def pooled_loop(pool: SmtpPool, messages: list[EmailMessage]) -> None:
    for mime in messages:
        pool.deliver(mime, mime["To"])


def pooled_threads(pool: SmtpPool, messages: list[EmailMessage]) -> None:
    with ThreadPoolExecutor(max_workers=THREADS) as threads:
        list(threads.map(lambda m: pool.deliver(m, m["To"]), messages))


async def timed(stack: Stack, name: str, send, count: int) -> float:
    messages = [message(n) for n in range(count)]
    before = len(stack.sink.mails)
    started = time.perf_counter()
    await asyncio.to_thread(send, messages)
    seconds = time.perf_counter() - started
    arrived = len(stack.sink.mails) - before
    if arrived != count and before + count <= 1000:  # the sink keeps its last 1,000
        raise RuntimeError(f"{name}: {arrived} of {count} messages arrived")
    rate = count / seconds
    say(f"smtp: {name}: {count} messages in {seconds:.2f} s = {rate:,.0f}/s")
    return rate


async def run(stack: Stack, args) -> list[Row]:
    count = args.messages
    s = stack.settings
    pool = SmtpPool(s)
    per_message = SmtpPool(s.model_copy(update={"smtp_connection_max_messages": 1}))
    await timed(stack, "warm-up", lambda m: pooled_loop(pool, m), 100)
    rates = {}
    for _ in range(2):  # twice, in turns: the best of each counts
        for name, send in (
            ("plain smtplib, one connection", lambda m: plain_loop(stack, m)),
            ("pooled", lambda m: pooled_loop(pool, m)),
            ("a connection per message", lambda m: pooled_loop(per_message, m)),
            (f"pooled, {THREADS} threads", lambda m: pooled_threads(pool, m)),
        ):
            rates[name] = max(rates.get(name, 0.0), await timed(stack, name, send, count))
    pool.close()
    plain, pooled = rates["plain smtplib, one connection"], rates["pooled"]
    ratio = pooled / plain
    return [
        Row(
            f"smtp: pooled deliver vs a plain smtplib loop on one connection, {count} messages",
            f"{ratio:.2f}×",
            f"≥ 0.8×: {'met' if ratio >= 0.8 else 'not met'}",
            f"{pooled:,.0f} vs {plain:,.0f} messages/s (best of 2); a connection per message "
            f"{rates['a connection per message']:,.0f}/s; pooled from {THREADS} threads "
            f"{rates[f'pooled, {THREADS} threads']:,.0f}/s ({pool.opened} connections); to the "
            "dev mail sink in the same process (no TLS, no login: a real relay makes each new "
            "connection dearer)",
        )
    ]
