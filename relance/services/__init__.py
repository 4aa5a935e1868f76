"""Services that talk to Temporal, SMTP or HTTP on behalf of the API and the worker: the tracking
outbox, schedules, the MQL notifier, SMTP delivery, lead activity, erasure."""
