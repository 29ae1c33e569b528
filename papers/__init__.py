"""One package per paper; each registers its experiments on import
(see registry.discover)."""
