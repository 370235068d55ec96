"""Bytes at rest: the keyring, the encrypted blob store, TLS certificates, backup and restore.
May import audit, db, config; never workflow, web or cli (contracts "layers",
"outbound-store-no-workflow"). db/types.py reads the column key from store/keys.py (ignored in
the layers contract while key rotation rewrites it)."""
