"""saltseg: salt body segmentation in seismic images."""

__version__ = "0.1.0"
