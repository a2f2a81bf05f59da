"""The backends: each implements the ports on one kind of storage (memory, PostgreSQL)."""
