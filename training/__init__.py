"""Training: fine-tuning with Ultralytics, export, evaluation, the model registry (the heavy ``train`` extra).

Every Ultralytics call is in :mod:`lineqa.training.ultralytics_adapter`; nothing else here imports it.
"""
