"""The keys: master keys under var/keys, the purpose keys derived from them, sealing and
opening (AES-256-GCM), the key set that notices a new or retired key, and the DKIM signing
key and signature (dkim.py). Imports nothing of ours but itself, so the database's encrypted
columns and the blob store can both use it (contracts "layers", "core-no-web-cli")."""
