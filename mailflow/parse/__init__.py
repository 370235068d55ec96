"""Reading mail, pure: MIME, charsets, forms, answers, photos, fingerprints; bytes in, values
out, no I/O (tests/fuzz/purity.py checks). Imports nothing of ours but parse itself (contract
"parse-pure")."""
