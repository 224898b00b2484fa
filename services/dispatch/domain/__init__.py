"""The dispatch domain: pure decisions over plain data (no await, no database, no broker).

Modules: :mod:`.model` (candidates, call-out states), :mod:`.selection` (who to call, in which
order), :mod:`.waves` (wave size, deadline decision, escalation, reply codes), :mod:`.replies`
(reply transitions), :mod:`.report` (figures), :mod:`.validation` (bad input of an incident).
"""
