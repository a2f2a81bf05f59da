"""Event stores: the contract, the in-memory reference and the PostgreSQL backend."""
