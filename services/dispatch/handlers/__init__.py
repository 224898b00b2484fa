"""Thin handlers: HTTP routes (:mod:`.http`), Kafka consumers (:mod:`.consumers`), the deadline ticker (:mod:`.ticker`)."""
