"""chime-roster: Chime meeting events from SQS into a live, order-independent roster.

The flow, one module each: sqs (drain) -> events (parse) -> ingest (store, dedupe) ->
machine (fold) -> broadcast (after commit). drain runs the SQS loops inside Celery workers.
"""
