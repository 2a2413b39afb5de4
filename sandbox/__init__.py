"""A local stand-in for the Meta WhatsApp Cloud API.

It accepts template sends on the Graph path, answers them the way Meta does (success JSON or
Graph error JSON), records every accepted send in a ledger, and delivers signed status webhooks
to a callback URL, with behaviour scripted by a scenario. Run it with ``python -m sandbox``.
"""
