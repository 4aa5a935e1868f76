"""Relance's command line: ``python -m relance journeys check FILE...`` checks journey
definitions (relance/services/definitions.py) the way publishing does; exit 1 on a problem."""

from __future__ import annotations

import sys

from relance.services.definitions import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
