"""Relance's command line:

python -m relance journeys check FILE...      check journey definitions the way publishing
                                              does (relance/services/definitions.py); exit 1
                                              on a problem
python -m relance journeys simulate FILE --lead profile.json --events script.json [--json]
                                              run one on a time-skipping Temporal server for
                                              one lead and print its timeline
                                              (relance/dev/simulate.py)
python -m relance journeys load DIR           publish the definitions of DIR/*.yaml whose
                                              content changed (relance/services/journey_store.py)
"""

from __future__ import annotations

import sys

from relance.dev import simulate
from relance.services import journey_store
from relance.services.definitions import main


def run(argv: list[str]) -> int:
    if argv[:2] == ["journeys", "simulate"]:
        return simulate.main(argv[2:])
    if argv[:2] == ["journeys", "load"]:
        if len(argv) != 3:
            print("usage: python -m relance journeys load DIR")
            return 2
        return journey_store.main(argv[2])
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
