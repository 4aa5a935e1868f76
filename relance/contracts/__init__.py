"""What the layers say to each other: the signals journeys receive, the search attributes they show, the dataclasses activities take and return. Light: safe to import inside a workflow."""
