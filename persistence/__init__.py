"""Persistence machinery shared by both roles: the database, migrations, add-once, the outbox, the step engine."""
