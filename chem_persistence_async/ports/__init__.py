"""The ports: Protocols the engine and workers program against, and every backend implements."""
