"""Notify's adapters: encryption at rest, the database, reply-page links (providers live in ``channels``)."""
