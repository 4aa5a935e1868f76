"""A broadcast to a whole list with the gates on (consent, suppression, frequency cap, the send
ledger's once), to the dev mail sink, vs a plain loop handing the same rendered messages to the
same sink over the same number of SMTP connections, in the same run.

The broadcast runs in the worker process (``python worker.py``) at a pace no wave waits for, so
the figure is its throughput; the loop runs in this process, one thread and one connection per
connection the worker's waves use (``RELANCE_BROADCAST_SEND_CONCURRENCY``), over messages
rendered beforehand. Both land in the same sink, which counts every Message-ID it receives:
the broadcast must deliver each recipient's message once, none missing.
"""

from __future__ import annotations

import asyncio
import resource
import smtplib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import parseaddr

from sqlalchemy import func, insert, select
from sqlmodel import Session

from activities.channels import template_context
from activities.email import EmailActivities, recipient
from bench.results import Row
from bench.stack import Stack, cpu_seconds, process_rss_mb, say
from relance.contracts.sending import SendRequest
from relance.domain.audiences import Audience
from relance.domain.models import Consent, Lead, ListMember, Message, utcnow
from relance.domain.rendering import Renderer, Tracking
from relance.domain.tokens import TokenSigner
from relance.services import broadcasts

TEMPLATE = "nurture_welcome_newsletter"
LIST = "bench-newsletter"


def seed(stack: Stack, count: int) -> None:
    """``count`` leads with email consent, all on one list (bulk inserts)."""
    now = utcnow()
    with Session(stack.engine) as session:
        for start in range(0, count, 5000):
            ids = [uuid.uuid4().hex for _ in range(start, min(count, start + 5000))]
            session.execute(
                insert(Lead),
                [
                    {
                        "id": i,
                        "email": f"lead-{i[:12]}@example.com",
                        "first_name": "Ada",
                        "locale": "en",
                        "time_zone": "Europe/Paris",
                        "score": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            session.execute(
                insert(Consent),
                [
                    {
                        "lead_id": i,
                        "channel": "email",
                        "purpose": "marketing",
                        "status": "granted",
                        "source_url": "https://example.com/form",
                        "wording_version": "v1",
                        "recorded_at": now,
                    }
                    for i in ids
                ],
            )
            session.execute(
                insert(ListMember),
                [
                    {"list_name": LIST, "lead_id": i, "reason": "bench", "added_at": now}
                    for i in ids
                ],
            )
        session.commit()


def rendered_messages(stack: Stack, count: int) -> list[tuple[str, bytes | EmailMessage]]:
    """What the broadcast sends, rendered and built beforehand for the same leads by the email
    provider's own code (the same bytes, but for the Message-ID and the tokens): the loop's
    input, each with its recipient."""
    s = stack.settings
    signer = TokenSigner(s.secret_key, max_age_seconds=s.tracking_token_max_age_days * 86400)
    renderer = Renderer(signer, s.public_base_url)
    provider = EmailActivities(s, stack.engine, renderer)
    with Session(stack.engine) as session:
        leads = session.scalars(select(Lead).limit(count)).all()
    out = []
    for lead in leads:
        message_id = uuid.uuid4().hex
        rendered = renderer.email(
            TEMPLATE, template_context(s, lead), Tracking(message_id, lead.id, "loop")
        )
        to = recipient(lead.email, lead.first_name)
        request = SendRequest(lead.id, "loop", "broadcast", f"lead-{lead.id}", TEMPLATE)
        out.append((to.addr_spec, provider._mime(request, f"loop-{message_id}", to, rendered, [])))
    return out


def plain_loop(
    stack: Stack, messages: list[tuple[str, bytes | EmailMessage]], connections: int
) -> None:
    sender = parseaddr(stack.settings.mail_from)[1]

    def one_connection(share: list[tuple[str, bytes | EmailMessage]]) -> None:
        with smtplib.SMTP(stack.settings.smtp_host, stack.settings.smtp_port) as smtp:
            for to, mime in share:
                if isinstance(mime, bytes):
                    smtp.sendmail(sender, [to], mime)
                else:
                    smtp.send_message(mime, to_addrs=[to])

    with ThreadPoolExecutor(max_workers=connections) as threads:
        list(threads.map(one_connection, [messages[i::connections] for i in range(connections)]))


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(stack: Stack, args) -> list[Row]:
    count = args.broadcast_leads
    connections = args.broadcast_connections
    stack.settings = stack.settings.model_copy(update={"broadcast_send_concurrency": connections})
    say(f"broadcast: seeding {count:,} leads with consent on the list {LIST!r}")
    started = time.perf_counter()
    seed(stack, count)
    say(f"broadcast: seeded in {time.perf_counter() - started:.1f} s; rendering the loop's input")
    messages = await asyncio.to_thread(rendered_messages, stack, count)

    # The baseline: the same messages, the same sink, the same number of connections.
    stack.sink.message_ids.clear()
    cpu_before = own_cpu()
    started = time.perf_counter()
    await asyncio.to_thread(plain_loop, stack, messages, connections)
    loop_seconds = time.perf_counter() - started
    loop_cpu = own_cpu() - cpu_before
    loop_rate = count / loop_seconds
    assert sum(stack.sink.message_ids.values()) == count, "the loop lost messages"
    say(f"broadcast: plain loop {count:,} in {loop_seconds:.1f} s = {loop_rate:,.0f}/s")
    del messages

    # The broadcast.
    stack.sink.message_ids.clear()
    stack.start("worker")
    await stack.wait_ready("worker")
    worker_pid = stack.pid_of("worker")
    server_pid = stack.server_pid
    rss_idle = process_rss_mb(worker_pid)
    cpu = {"worker": cpu_seconds(worker_pid), "server": cpu_seconds(server_pid or worker_pid)}
    cpu_before = own_cpu()
    with Session(stack.engine) as session:
        row = broadcasts.create(
            session,
            broadcasts.BroadcastSpec(Audience("list", LIST), TEMPLATE, per_hour=1_000_000_000),
        )
    peak = {"rss": rss_idle}
    done = threading.Event()

    async def sample() -> None:
        last = 0
        while not done.is_set():
            try:
                peak["rss"] = max(peak["rss"], process_rss_mb(worker_pid))
            except FileNotFoundError:  # the worker stopped: the result will say why
                return
            arrived = sum(stack.sink.message_ids.values())
            if arrived - last >= count // 10:
                say(f"broadcast: {arrived:,} arrived, worker RSS {peak['rss']:.0f} MB")
                last = arrived
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    handle = await broadcasts.start(stack.client, stack.settings, row)
    result = await handle.result()
    seconds = time.perf_counter() - started
    done.set()
    await sampler
    worker_cpu = cpu_seconds(worker_pid) - cpu["worker"]
    server_cpu = cpu_seconds(server_pid) - cpu["server"] if server_pid else float("nan")
    sink_cpu = own_cpu() - cpu_before
    rate = count / seconds
    ids = stack.sink.message_ids
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    with Session(stack.engine) as session:
        sent = session.execute(
            select(func.count()).where(Message.status == "sent", Message.journey == "broadcast")
        ).scalar_one()
    missing = count - len(ids)
    ratio = rate / loop_rate
    runs = result["runs"]
    say(
        f"broadcast: {count:,} in {seconds:.1f} s = {rate:,.0f}/s; {duplicates} duplicates, "
        f"{missing} missing; worker CPU {worker_cpu:.0f} s, Temporal {server_cpu:.0f} s, sink "
        f"{sink_cpu:.0f} s; worker RSS {peak['rss']:.0f} MB"
    )
    return [
        Row(
            f"broadcast: {count:,} leads, gates on, vs a plain loop of the same rendered messages "
            f"over {connections} SMTP connections",
            f"{ratio:.2f}×",
            f"≥ 0.5×: {'met' if ratio >= 0.5 else 'not met'}; worker RSS < 300 MB: "
            f"{'met' if peak['rss'] < 300 else 'not met'} ({peak['rss']:.0f} MB)",
            f"{rate:,.0f} vs {loop_rate:,.0f} messages/s ({seconds:.0f} s vs {loop_seconds:.0f} "
            f"s); {sent:,} sent, {duplicates} duplicates, {missing} missing at the sink; "
            f"{runs} workflow runs (continue-as-new); where the time goes: worker CPU "
            f"{worker_cpu:.0f} s ({worker_cpu / count * 1000:.1f} ms a message: ledger, "
            f"rendering, MIME, SMTP), Temporal server {server_cpu:.0f} s, the sink's MIME "
            f"parsing {sink_cpu:.0f} s (the loop's run: {loop_cpu:.0f} s), on 2 shared cores; "
            f"idle worker {rss_idle:.0f} MB",
        )
    ]
