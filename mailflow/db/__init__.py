"""The database: every table (models.py, access_models.py), sessions and transactions, column
types, the Alembic migrations. The bottom layer: imports nothing of ours but store/keys.py for
the column key (ignored in the layers contract while key rotation rewrites it)."""
