"""The classifier component and the pipeline it runs.

OpenCV's own pixel limit is the second wall behind the header checks in :mod:`.formats`:
OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when its library loads (checked: setting it
after ``import cv2`` has no effect), so it is set here, before any module of this package
imports cv2, to the largest ``MaxImagePixels`` the configuration accepts. A deployer may set a
lower value in the component's environment; it is then kept.
"""

import os

from .formats import MAX_DECODE_PIXELS

os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_DECODE_PIXELS))
