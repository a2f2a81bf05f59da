"""Every SQL statement the PostgreSQL backend sends, by subject, parameterised."""
