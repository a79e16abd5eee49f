"""Rucio tokens for sessions, once each: reading JWT claims (:mod:`tokens.jwt`), minting
with the hub's key (:mod:`tokens.mint`), RFC 8693 exchange at the identity provider
(:mod:`tokens.exchange`), where a renewed token comes from (:mod:`tokens.sources`), the
renewal broker with its per-user cache (:mod:`tokens.broker`) and the rewrite of the
users' Kubernetes Secrets after a renewal (:mod:`tokens.secret_renewal`).

Layer 2: used by the spawn hooks (spawner_hooks) and by the token service
(hub_services.issuer); imports only the vocabulary and the site model below it.
"""
