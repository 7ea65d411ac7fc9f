"""The built-in plugins: paramdict's own features are registered through the same hooks."""
