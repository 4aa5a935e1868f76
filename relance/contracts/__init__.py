"""What the layers say to each other: the signals journeys receive, the search attributes they
show, the dataclasses activities take and return, the journey catalogue (``catalogue.py``: every
journey declared once) and the graph of journeys that enroll each other (``journey_graph.py``).
Light: safe to import inside a workflow."""
