"""The vision core: pure functions over numpy arrays (numpy and OpenCV only).

Image decoding and validation, Ultralytics-identical letterboxing, YOLO output decoding with NMS, tiling,
recipe decisions and overlays. What `serving` returns and what `training` evaluates are these types.
"""
