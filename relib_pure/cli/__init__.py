"""The ``relib-pure`` command line: a thin layer that renders library results."""
