"""The serving runtime: what runs next to the production line.

ONNX Runtime model execution and ``lineqa predict`` today; the gRPC gateway, the Triton client and launcher,
records and the review app build on it. Installs and runs without torch or ultralytics.
"""
