"""Ray actors: controller, broker, partition replica, group coordinator (docs/architecture.md, section 2)."""
