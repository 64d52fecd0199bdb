"""The bottom layer: errors, atomic file writes, paths, statistics and the name registries.
Nothing here imports any other part of csu_lib."""
__version__ = "0.1.0"
