"""The pure domain: events, artifacts, definitions, fingerprints and errors. No I/O here."""
