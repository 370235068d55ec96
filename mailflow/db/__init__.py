"""The database: every table (models.py, access_models.py), sessions and transactions, column
types, the Alembic migrations. Imports nothing of ours but crypto/ (the key set that seals the
PHI columns) and config."""
