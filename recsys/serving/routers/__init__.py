"""The serving app's routers: recommendations, items, operations (health, readiness, metrics) and admin (reload)."""
