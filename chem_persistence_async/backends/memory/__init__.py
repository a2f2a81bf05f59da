"""The in-memory backend: the reference semantics of every port, with no database."""
