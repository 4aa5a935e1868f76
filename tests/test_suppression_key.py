"""The suppression list survives a rotation of the secret key once RELANCE_SUPPRESSION_KEY holds
the key its entries were hashed with."""

from __future__ import annotations

import uuid

import pytest
from fastapi import HTTPException
from sqlmodel import Session

from api import crud
from api.schemas import LeadCreate
from relance.services.erasure import erase_lead
from tests.conftest import EMAIL_CONSENT


def sign_up(engine, settings, email: str):
    with Session(engine, expire_on_commit=False) as session:
        return crud.upsert_lead(
            session=session,
            data=LeadCreate(email=email, first_name="Ada", consents=[EMAIL_CONSENT]),
            default_phone_region="FR",
            suppression_key=settings.suppression_hash_key,
        )


def test_an_erased_address_stays_refused_after_the_secret_key_rotates(engine, settings):
    email = f"erased-{uuid.uuid4().hex[:8]}@example.com"
    before = settings.model_copy(update={"secret_key": "old-secret", "suppression_key": ""})
    lead, _ = sign_up(engine, before, email)
    erase_lead(engine, lead.id, actor="test", reason="asked", hash_key=before.suppression_hash_key)

    # Rotated the way the README says: the suppression key keeps the old secret's value.
    rotated = settings.model_copy(
        update={"secret_key": "new-secret", "suppression_key": "old-secret"}
    )
    with pytest.raises(HTTPException) as refused:
        sign_up(engine, rotated, email)
    assert refused.value.status_code == 409 and "erased" in refused.value.detail

    # Rotated without it, the entry no longer matches: the address would be signed up again.
    careless = settings.model_copy(update={"secret_key": "new-secret", "suppression_key": ""})
    _, created = sign_up(engine, careless, email)
    assert created
