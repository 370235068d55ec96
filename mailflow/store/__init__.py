"""Bytes at rest: the encrypted blob store, TLS certificates, backup and restore, re-sealing
columns under a new key. May import crypto, audit, db, config; never workflow, web or cli
(contracts "layers", "outbound-store-no-workflow"). The keys themselves are in crypto/."""
