"""Who is who: passwords, the one sign-in lockout (SMTP and web), TOTP codes, reply addresses
and the sender verdict (SPF/DKIM/DMARC results). May import db, config and parse (types
only); never workflow, web or cli (contracts "layers", "core-no-web-cli")."""
