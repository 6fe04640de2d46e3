"""gpuwire: run unmodified CUDA applications on a GPU across the network."""

__version__ = "0.1.0"
