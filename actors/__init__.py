"""Ray actors: controller, broker, partition replica, group coordinator (DESIGN.md §2)."""
