"""racelens pipeline package."""
