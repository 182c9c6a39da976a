"""Hub and plants: signed model bundles down, flagged parts and QA decisions up, over mutual TLS.

The hub runs datasets, pooling, training and the model registry for every tenant; each plant runs its gateways,
cameras and review app next to its lines and follows the models its tenant promotes on the hub. Imported as
``lineqa.fleet``; it uses serving, datasets, the review app's tables and the registry's torch-free cluster rule
(:mod:`lineqa.training.cluster_models`), never torch.
"""
