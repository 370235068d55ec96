"""Email out: rendering a template into a message, queueing it in the outbox (in the caller's
transaction), and delivering the outbox (relay or Maildir) with retries. May import app, sla
(words only), trust, store, audit, db, parse, config; never workflow (contract
"outbound-store-no-workflow")."""
