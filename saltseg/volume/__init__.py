"""Salt probabilities of whole seismic sections and cubes (SEG-Y, ``.npy``, images).

``predict_array`` takes an in-memory section or cube; ``predict_file`` reads a file, streams it a
slab of lines at a time and writes probabilities, masks, SEG-Y copies and a JSON record.
"""

from saltseg.volume.io import Volume, open_volume, volume_from_array
from saltseg.volume.model import RunSpec
from saltseg.volume.pipeline import predict_file
from saltseg.volume.predict import VolumeSettings, predict_array
from saltseg.volume.scaling import Scaling
from saltseg.volume.windows import predict_sections, window_weights

__all__ = [
    "RunSpec",
    "Scaling",
    "Volume",
    "VolumeSettings",
    "open_volume",
    "predict_array",
    "predict_file",
    "predict_sections",
    "volume_from_array",
    "window_weights",
]
