"""Shared test infrastructure: a fault-injecting model host (httpserver), its HTTPS variant
(tlsserver), a forwarding proxy (proxy) and an archive factory with hostile cases (archives).
"""
