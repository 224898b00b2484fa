"""Notify's handlers: Kafka consumers (contacts, call-outs) and HTTP routes (callbacks, reply page)."""
