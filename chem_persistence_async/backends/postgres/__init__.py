"""The PostgreSQL backend: ``Database`` (pool, settings, migrations, embedded server, retries) and
the ports on it. Its SQL lives in ``sql/``."""
