"""State and time: the database, the scheduler tick, the service and the `duban` CLI."""
