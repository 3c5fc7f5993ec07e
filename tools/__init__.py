"""The `ipva` command line and the support tools behind it."""
