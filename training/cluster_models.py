"""A cluster's models reach its members only: grants, new versions and hub bundles all check membership.

A platform model trained on a cluster's pool (``cluster/<name>@N`` as the dataset of any version's lineage)
holds what the cluster's members contributed to that cluster, with their consent, and to nobody else.
``lineqa train`` lets only members start from it (:func:`lineqa.training.train_cli.cluster_base_rule`); the
same rule holds for the other ways a tenant reaches a platform model: a grant (``lineqa models allow``), a new
version of a model already granted (``lineqa models publish``: the grant follows the model, so a cluster-trained
version must not arrive at a non-member through an old grant), and the bundle the hub builds for each tenant's
plants (so a tenant taken out of a cluster stops receiving its models at the next sync, grant or not).
Membership is read now, from the catalog: a withdrawn member is a non-member.

Torch-free: the hub's fleet service imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from lineqa.datasets.clusters import is_member
from lineqa.datasets.pool import parse_pool_ref
from lineqa.serving.model_access import model_owner
from lineqa.serving.model_repository import ModelRepository


def trained_on_cluster(lineage: Mapping[str, Any]) -> str | None:
    """The cluster whose pool a version was trained on, from its lineage; None for any other dataset."""
    ref = str((lineage.get("dataset") or {}).get("ref") or "")
    parsed = parse_pool_ref(ref) if ref else None
    return parsed[0] if parsed is not None else None


def clusters_behind(repository: ModelRepository, model: str) -> dict[str, list[int]]:
    """The clusters whose pools trained any version of platform model ``model``, with those versions."""
    if model_owner(model) is not None or model not in repository.model_names():
        return {}
    found: dict[str, list[int]] = {}
    for version in repository.versions(model):
        cluster = trained_on_cluster(version.metadata.lineage)
        if cluster is not None:
            found.setdefault(cluster, []).append(version.version)
    return found


def outside_clusters(engine: Engine, clusters: Mapping[str, list[int]], model: str, tenant: str) -> str | None:
    """Why ``tenant`` may not reach ``model`` trained on ``clusters`` (see :func:`clusters_behind`), or None."""
    for cluster, versions in sorted(clusters.items()):
        if not is_member(engine, cluster, tenant):
            shown = ", ".join(f"v{v}" for v in versions)
            return (
                f"{model} {shown} was trained on cluster {cluster}'s pool and tenant {tenant} is not a member of "
                f"cluster {cluster}: what a cluster pools stays with its members"
            )
    return None


def publish_refusal(engine: Engine, model: str, lineage: Mapping[str, Any], granted: list[str]) -> str | None:
    """Why a version with ``lineage`` must not join platform model ``model`` whose grants reach ``granted``."""
    cluster = trained_on_cluster(lineage)
    if cluster is None or model_owner(model) is not None:
        return None
    outsiders = [tenant for tenant in granted if not is_member(engine, cluster, tenant)]
    if not outsiders:
        return None
    return (
        f"the run was trained on cluster {cluster}'s pool, and {model} is granted to {', '.join(outsiders)}, "
        f"not members of cluster {cluster}: publish it under another name, or disallow them first"
    )
