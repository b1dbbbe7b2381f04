"""Clients: Cluster (start/connect), Admin, Producer, Consumer (DESIGN.md §5)."""
