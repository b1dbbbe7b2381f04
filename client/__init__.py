"""Clients: Cluster (start/connect), Admin, Producer, Consumer (docs/architecture.md, section 3)."""
