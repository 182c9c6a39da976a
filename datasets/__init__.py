"""The tenant dataset catalog: importers and exporters, validation, statistics, splits, versions, synthesis.

Uses the vision core for image checks; never torch.
"""
