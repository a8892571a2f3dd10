"""racelens tests."""
