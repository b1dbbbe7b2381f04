"""Connect: source and sink connectors as Ray actors (issue 8)."""
