"""Relance's command line:

python -m relance journeys check FILE...      check journey definitions the way publishing
                                              does (relance/services/definitions.py); exit 1
                                              on a problem
python -m relance journeys simulate FILE --lead profile.json --events script.json [--json]
                                              run one on a time-skipping Temporal server for
                                              one lead and print its timeline
                                              (relance/dev/simulate.py)
"""

from __future__ import annotations

import sys

from relance.dev import simulate
from relance.services.definitions import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:2] == ["journeys", "simulate"]:
        sys.exit(simulate.main(argv[2:]))
    sys.exit(main(argv))
