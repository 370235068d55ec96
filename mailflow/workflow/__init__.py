"""What happens to a message and a case: the worker, the routing chain, every case state change
with its audit event and its emails, assignment, the SLA enforcer and scheduler, read models
(case detail). May import outbound, reports, app, sla, trust, store, audit, bus, db, parse,
config; never web, cli or intake (contracts "layers", "core-no-web-cli")."""
