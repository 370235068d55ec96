"""The doors mail comes in by (SMTP, IMAP): cheap checks, then spool to disk and database
before acknowledging. May import app, trust (sign-in), store, audit, db, config; never
workflow: the worker routes what is spooled (contract "doors-no-workflow")."""
