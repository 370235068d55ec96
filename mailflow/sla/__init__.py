"""Business time: the calendar (hours, holidays), the policies (targets, warnings), each case's
clock (start, pause, resume, stop, its events), the explanation of a deadline and the SLA
report's figures. May import db and config; never workflow: workflow acts on deadlines, sla
only counts them (contract "sla-no-workflow")."""
