"""The database layer: settings, the pool wrapper, migrations, the embedded server and retries."""
