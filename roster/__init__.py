"""chime-roster: Chime meeting events from SQS into a live, order-independent roster. The map of
its layers is docs/architecture.md."""
