"""Temporal payloads are encrypted (relance/domain/encryption.py): what Temporal stores is
unreadable without the key, the worker and the API read it, old keys still decrypt after a rotation,
and the codec endpoint lets an operator (API key or UI session) decrypt."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, Worker

from activities import build_activities
from relance.contracts.signals import CLICKED, TrackingSignal
from relance.dev.devstack import ensure_env_file
from relance.dev.seeding import TEST_CONVERTER, TEST_PAYLOAD_KEYS, make_test_codec, unique_id
from relance.domain.encryption import (
    EncryptionCodec,
    EncryptionConfigError,
    codec_from_settings,
    encrypted_converter,
)
from relance.domain.settings import Settings
from tests.waiting import eventually
from worker import ALL_JOURNEYS, build_worker, workflow_runner
from workflows.recording import JourneyRuns
from workflows.welcome import WelcomeInput, WelcomeJourney, WelcomeResult


def payloads_of(node, *, skip=("searchAttributes",)):
    """Every Payload in a history (JSON form), wherever it sits, but search attributes: they are
    indexed by the server, so never encrypted (ids and step names only: Journey, LeadId, Step,
    Score), and ``workflow.patched`` markers, which the SDK's core writes itself (a patch id and a
    flag)."""
    if isinstance(node, dict):
        if node.get("markerName") == "core_patch":
            return
        if "data" in node and "metadata" in node:
            yield node
        for key, value in node.items():
            if key not in skip:
                yield from payloads_of(value, skip=skip)
    elif isinstance(node, list):
        for value in node:
            yield from payloads_of(value, skip=skip)


def as_payload(node: dict) -> Payload:
    return Payload(
        metadata={k: base64.b64decode(v) for k, v in node["metadata"].items()},
        data=base64.b64decode(node.get("data", "")),
    )


async def _status_if(handle, predicate):
    status = await handle.query(WelcomeJourney.status)
    return status if predicate(status) else None


async def test_a_journey_history_is_unreadable_without_the_key(
    client, settings, engine, sink, make_lead
):
    lead = make_lead()
    # A click URL personalised with the address (a realistic leak): it travels in a signal.
    leaky_url = f"https://example.com/offer?email={lead.email}"
    async with build_worker(client, settings, engine):
        handle = await client.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=unique_id(f"welcome-{lead.id}"),
            task_queue=settings.temporal_task_queue,
        )
        await sink.wait_for_mail(to=lead.email)
        status = await eventually(
            lambda: _status_if(handle, lambda s: s.messages),
            timeout=15,
            what="the welcome to be recorded",
        )
        await handle.signal(CLICKED, TrackingSignal(status.messages[0].message_id, leaky_url))
        result: WelcomeResult = await handle.result()
    assert result.outcome == "clicked"

    # What the Temporal server holds, read by a client without the codec.
    no_key = Client(
        client.service_client, namespace=client.namespace, data_converter=DataConverter.default
    )
    history = await no_key.get_workflow_handle(handle.id).fetch_history()
    raw = json.loads(history.to_json())
    stored = list(payloads_of(raw))
    assert len(stored) >= 6, "inputs, activity results, the signal and the result are all payloads"
    for node in stored:
        payload = as_payload(node)
        assert payload.metadata["encoding"] == b"binary/encrypted"
        assert payload.metadata["encryption-key-id"] == b"test-2026"
        for clear in (lead.email.encode(), lead.id.encode(), b"lead_id", b"example.com"):
            assert clear not in payload.data
        assert not payload.data.startswith(
            b'{"'
        )  # not JSON (two bytes may occur by chance inside ciphertext)
    assert lead.email not in history.to_json()
    with pytest.raises(Exception):  # a client without the key cannot read the result
        await no_key.get_workflow_handle(handle.id).result()

    # With the key: the same payloads decode to the journey's JSON, the address included.
    decoded = await make_test_codec().decode([as_payload(n) for n in stored])
    texts = [p.data.decode() for p in decoded]
    assert any(lead.id in t for t in texts) and any(lead.email in t for t in texts)
    assert all(p.metadata["encoding"] == b"json/plain" for p in decoded if p.data)
    assert (await client.get_workflow_handle(handle.id).result())["outcome"] == "clicked"

    # The encrypted history replays with the worker's converter (and determinism is checked).
    await Replayer(
        workflows=ALL_JOURNEYS,
        workflow_runner=workflow_runner(),
        data_converter=TEST_CONVERTER,
        interceptors=[JourneyRuns()],  # the worker's: journeys record their runs
    ).replay_workflow(history)


async def test_a_journey_started_under_the_old_key_finishes_after_the_rotation(
    client, settings, engine, sink, make_lead
):
    """Workers restart with a new current key mid-journey: the journey's history (inputs,
    results so far) is under the old key, what follows under the new one; both are read."""
    keys = {k: base64.b64decode(v) for k, v in TEST_PAYLOAD_KEYS.items()}
    before = Client(
        client.service_client,
        namespace=client.namespace,
        data_converter=encrypted_converter(EncryptionCodec(keys, "test-old")),
    )
    after = Client(
        client.service_client, namespace=client.namespace, data_converter=TEST_CONVERTER
    )  # current: test-2026
    queue = unique_id("rotation")
    lead = make_lead()
    # No sticky cache: the next workflow task goes to the task queue, where the new worker is.
    async with Worker(
        before,
        task_queue=queue,
        workflows=ALL_JOURNEYS,
        activities=build_activities(settings, engine),
        activity_executor=ThreadPoolExecutor(4),
        max_cached_workflows=0,
    ):
        handle = await before.start_workflow(
            WelcomeJourney.run,
            WelcomeInput(lead_id=lead.id),
            id=unique_id(f"welcome-{lead.id}"),
            task_queue=queue,
        )
        await sink.wait_for_mail(to=lead.email)
        status = await eventually(
            lambda: _status_if(handle, lambda s: s.step == "waiting_for_open"),
            timeout=15,
            what="the journey to wait for the open",
        )  # no activity running: safe to stop
    async with build_worker(after, settings, engine, task_queue=queue):
        handle = after.get_workflow_handle_for(WelcomeJourney.run, handle.id)
        await handle.signal(
            CLICKED, TrackingSignal(status.messages[0].message_id, "https://example.com/x")
        )
        result = await handle.result()
    assert result.outcome == "clicked"
    key_ids = {
        as_payload(n).metadata["encryption-key-id"]
        for n in payloads_of(json.loads((await handle.fetch_history()).to_json()))
    }
    assert key_ids == {b"test-old", b"test-2026"}


async def test_payloads_written_with_an_old_key_are_read_after_a_rotation():
    keys = {k: base64.b64decode(v) for k, v in TEST_PAYLOAD_KEYS.items()}
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"lead_id": "abc"}')
    [with_old] = await EncryptionCodec(keys, "test-old").encode([plain])
    assert with_old.metadata["encryption-key-id"] == b"test-old" and b"abc" not in with_old.data

    rotated = EncryptionCodec(keys, "test-2026")  # the current key is now the new one
    [again] = await rotated.decode([with_old])
    assert again == plain
    [with_new] = await rotated.encode([plain])
    assert with_new.metadata["encryption-key-id"] == b"test-2026"

    # A key removed from the settings no longer decrypts: the error says which key is missing.
    without_old = EncryptionCodec({"test-2026": keys["test-2026"]}, "test-2026")
    with pytest.raises(ValueError, match="test-old"):
        await without_old.decode([with_old])
    # Tampered ciphertext, or a payload relabelled with another key id, is refused.
    tampered = Payload(
        metadata=with_old.metadata, data=with_old.data[:-1] + bytes([with_old.data[-1] ^ 1])
    )
    relabelled = Payload(
        metadata={**with_old.metadata, "encryption-key-id": b"test-2026"}, data=with_old.data
    )
    for bad in (tampered, relabelled):
        with pytest.raises(Exception):
            await rotated.decode([bad])
    # A plain payload (a journey started before encryption was on) passes through.
    assert await rotated.decode([plain]) == [plain]


def test_missing_or_malformed_keys_are_refused_with_a_clear_message():
    with pytest.raises(EncryptionConfigError, match="RELANCE_PAYLOAD_KEYS is not set"):
        codec_from_settings(Settings(_env_file=None))
    with pytest.raises(EncryptionConfigError, match="32"):
        codec_from_settings(
            Settings(_env_file=None, payload_keys={"short": base64.b64encode(b"x" * 16).decode()})
        )
    with pytest.raises(EncryptionConfigError, match="not one of"):
        codec_from_settings(
            Settings(_env_file=None, payload_keys=TEST_PAYLOAD_KEYS, payload_key_id="nope")
        )
    with pytest.raises(EncryptionConfigError, match="base64"):
        codec_from_settings(Settings(_env_file=None, payload_keys={"k": "not base64!"}))


def test_make_run_generates_a_payload_key_into_env(tmp_path: Path, monkeypatch):
    for name in (
        "RELANCE_API_KEY",
        "RELANCE_SECRET_KEY",
        "RELANCE_PAYLOAD_KEYS",
        "RELANCE_PAYLOAD_KEY_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    assert "RELANCE_PAYLOAD_KEYS" in ensure_env_file(env)
    assert ensure_env_file(env) == []  # kept on the next start
    settings = Settings(_env_file=env)
    codec = codec_from_settings(settings)
    assert (
        codec.current_key_id == settings.payload_key_id
        and settings.payload_key_id in settings.payload_keys
    )


async def test_the_codec_endpoint_decrypts_for_an_operator_only(live):
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"lead_id": "abc"}')
    [sealed] = await make_test_codec().encode([plain])
    body = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }
    headers = {"X-Namespace": "default", "Origin": "http://localhost:8233"}

    refused = await live.public.post("/codec/decode", json=body, headers=headers)
    assert refused.status_code == 401
    assert (
        refused.headers["access-control-allow-origin"] == "http://localhost:8233"
    )  # the UI can show why

    for auth in (
        {"X-API-Key": live.settings.api_key},
        {"Authorization": f"Bearer {live.settings.api_key}"},
    ):
        answer = await live.public.post("/codec/decode", json=body, headers={**headers, **auth})
        assert answer.status_code == 200, answer.text
        [out] = answer.json()["payloads"]
        assert base64.b64decode(out["data"]) == b'{"lead_id": "abc"}'

    # The UI: a preflight from its origin, then a session cookie from /codec/login.
    preflight = await live.public.options(
        "/codec/decode",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in preflight.headers["access-control-allow-headers"]
    other = await live.public.options("/codec/decode", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers

    wrong = await live.public.post("/codec/login", data={"api_key": "guess"})
    assert wrong.status_code == 401 and "relance_codec" not in wrong.cookies
    login = await live.public.post("/codec/login", data={"api_key": live.settings.api_key})
    assert login.status_code == 200
    cookie = login.cookies["relance_codec"]
    live.public.cookies.clear()
    answer = await live.public.post(
        "/codec/decode", json=body, headers={**headers, "Cookie": f"relance_codec={cookie}"}
    )
    assert answer.status_code == 200
    forged = await live.public.post(
        "/codec/decode", json=body, headers={**headers, "Cookie": "relance_codec=forged"}
    )
    assert forged.status_code == 401
    from itsdangerous import (
        URLSafeTimedSerializer,
    )  # a session opened with a former API key is over

    former = URLSafeTimedSerializer(live.settings.secret_key, salt="relance.codec-session").dumps(
        "api-key:0123456789abcdef"
    )
    stale = await live.public.post(
        "/codec/decode", json=body, headers={**headers, "Cookie": f"relance_codec={former}"}
    )
    assert stale.status_code == 401

    # encode then decode round-trips; garbage is a 400, not a crash.
    encoded = await live.http.post(
        "/codec/encode",
        json={
            "payloads": [
                {
                    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                    "data": base64.b64encode(b'"x"').decode(),
                }
            ]
        },
    )
    assert (
        base64.b64decode(encoded.json()["payloads"][0]["metadata"]["encoding"])
        == b"binary/encrypted"
    )
    assert (await live.http.post("/codec/decode", json=encoded.json())).json()["payloads"][0][
        "data"
    ] == base64.b64encode(b'"x"').decode()
    assert (await live.http.post("/codec/decode", content=b"not json")).status_code == 400
