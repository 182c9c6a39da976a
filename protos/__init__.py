"""The wire contract (``.proto`` files) and the Python code generated from it.

Import the messages as ``from lineqa.protos.lineqa.inspection.v1 import inspection_pb2``. The generated files are
committed; ``python -m lineqa.protos.codegen`` rewrites them and a test fails when they are stale.
"""
