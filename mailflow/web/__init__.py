"""The admin web and its JSON API (FastAPI): pages, sign-in, actions. A door onto the core:
may import workflow, outbound, reports, sla, trust, store, app, audit, bus, db, parse, config;
never cli or intake, and nothing below it imports web (contracts "layers", "core-no-web-cli")."""
