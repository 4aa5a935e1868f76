"""What the layers say to each other: the signals journeys receive, the search attributes they
show, the dataclasses activities take and return with a typed stub per activity that journeys
call (``workflow.execute_activity(send_email, ...)``; the worker runs the implementation of the
same name), the channel list (``channels.py``), the journey catalogue (``catalogue.py``: every
journey declared once) and the graph of journeys that enroll each other (``journey_graph.py``).
Light: safe to import inside a workflow; no database, SMTP or HTTP library (an import-linter
contract)."""
