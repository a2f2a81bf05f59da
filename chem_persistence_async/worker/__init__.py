"""Workers: claim flow jobs from the work queue and run them (engine + ports, never a backend)."""
