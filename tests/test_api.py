import subprocess
import sys

import numpy as np

import saltseg


def test_public_api_resolves():
    for name in saltseg.__all__:
        assert getattr(saltseg, name) is not None
    masks = np.zeros((2, 101, 101), bool)
    assert saltseg.score(masks, masks) == 1.0


def test_import_is_light():
    code = "import sys, saltseg; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
