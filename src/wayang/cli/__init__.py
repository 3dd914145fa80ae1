"""The `wayang` command line."""
