"""What keeps face_tagging's accepted path small (issue 16; measured by ``python -m bench.accepted face_tagging``),
asserted by structure, never by a memory figure: the photo's pixels are decoded once, as small as the faces
allow, and a crop loads no image format but JPEG. (The trimmed botocore data: tests/shared/test_botocore_data.py.)
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

from PIL import Image

from functions.face_tagging import images
from tests.functions.test_face_tagging import BLUE, BOXES, RED, photo
from tests.helpers import ROOT

# In a fresh interpreter: a photo's crops made as the function makes them; prints what was loaded and decoded.
CROPS = r"""
import json, sys
from functions.face_tagging import images
data = sys.stdin.buffer.read()
boxes = json.loads(sys.argv[1])
images.check(data)
pixels = images.decode(data, boxes)
crops = [images.crop(pixels, box) for box in boxes]
print(json.dumps({"decoded": pixels.size, "crops": len(crops),
                  "plugins": sorted(name for name in sys.modules if name.startswith("PIL.") and "Plugin" in name)}))
"""


def test_a_crop_is_the_jpeg_pillow_writes_for_format_jpeg():
    pixels = Image.open(io.BytesIO(photo())).convert("RGB")
    for colour in (RED, BLUE):
        expected = io.BytesIO()
        pixels.crop(images.crop_box(pixels.size, BOXES[colour])).save(expected, format="JPEG",
                                                                       quality=images.CROP_QUALITY)
        assert images.crop(pixels, BOXES[colour]) == expected.getvalue()


def test_the_crops_load_no_format_plugin_but_jpeg_and_decode_at_the_scale_the_faces_allow():
    boxes = [BOXES[RED], BOXES[BLUE]]  # 320x360 and 240x240 px in a 1600x1200 photo: halved, not quartered
    answer = subprocess.run([sys.executable, "-c", CROPS, json.dumps(boxes)], input=photo([RED, BLUE], (1600, 1200)),
                            capture_output=True, check=True, cwd=ROOT)
    seen = json.loads(answer.stdout)
    assert seen == {"decoded": [800, 600], "crops": 2, "plugins": ["PIL.JpegImagePlugin"]}
