"""ggic: Greengrass V2 edge image classification components."""

__version__ = "1.0.0"
