"""``lineqa datasets clusters`` and the cluster pool end to end, as the platform admin and the tenants run them:
create a cluster, add members, contribute with ``--cluster``, build ``cluster/<name>@N``, export and count it,
withdraw, remove a member; a non-member's commands get the answer a cluster that does not exist gets."""

from __future__ import annotations

from pathlib import Path

from tests.datasets.test_cli import as_json, lineqa


def build_home(home: Path, tmp_path: Path) -> None:
    """acme and globex with a small synthetic dataset each, snapshotted as @1; a cluster ``auto`` of acme and
    globex, acme's version contributed, and its first pool built."""
    data = as_json(lineqa(home, "--json", "synth", str(tmp_path / "synth"), "--count", "4", "--val", "2",
                          "--size", "64"))["data"]  # type: ignore[index]  # fmt: skip
    for tenant in ("acme", "globex", "initech"):
        lineqa(home, "import", f"{tenant}/metal", str(data))
        lineqa(home, "snapshot", f"{tenant}/metal")
    lineqa(home, "clusters", "create", "auto", "--by", "admin@hub")
    for tenant in ("acme", "globex"):
        lineqa(home, "clusters", "add-member", "auto", tenant, "--by", "admin@hub")
    lineqa(home, "contribute", "acme/metal@1", "--cluster", "auto", "--by", "qa-lead@acme")
    lineqa(home, "pool", "--cluster", "auto")


def test_the_cluster_workflow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_home(home, tmp_path)
    assert as_json(lineqa(home, "--json", "clusters", "list")) == ["auto"]
    assert as_json(lineqa(home, "--json", "clusters", "list", "--tenant", "globex")) == ["auto"]
    assert as_json(lineqa(home, "--json", "clusters", "list", "--tenant", "initech")) == []
    members = as_json(lineqa(home, "--json", "clusters", "members", "auto"))
    assert [(m["tenant"], m["added_by"], m["removed_at"]) for m in members] == [  # type: ignore[index, union-attr]
        ("acme", "admin@hub", None),
        ("globex", "admin@hub", None),
    ]

    # A non-member cannot contribute, and is told exactly what a missing cluster would tell it.
    refused = lineqa(home, "contribute", "initech/metal@1", "--cluster", "auto", check=False)
    missing = lineqa(home, "contribute", "initech/metal@1", "--cluster", "nope", check=False)
    assert refused.returncode == missing.returncode == 2
    assert refused.stderr == missing.stderr.replace("nope", "auto") and "no cluster 'auto'" in refused.stderr

    lineqa(home, "contribute", "globex/metal@1", "--cluster", "auto", "--by", "ml@globex")
    second = as_json(lineqa(home, "--json", "pool", "--cluster", "auto"))
    assert second["ref"] == "cluster/auto@2" and second["images"] == 12  # type: ignore[index]
    lineqa(home, "export", "cluster/auto@2", "--format", "yolo", "--out", str(tmp_path / "auto-2"))
    assert (tmp_path / "auto-2" / "data.yaml").is_file()
    stats = as_json(lineqa(home, "--json", "stats", "cluster/auto@2"))
    assert stats["images"] == 12  # type: ignore[index]

    # Withdrawal and removal: later pools leave the version out, built ones stay.
    lineqa(home, "contribute", "globex/metal@1", "--cluster", "auto", "--withdraw", "--by", "ml@globex")
    assert as_json(lineqa(home, "--json", "pool", "--cluster", "auto"))["number"] == 1  # type: ignore[index]
    lineqa(home, "clusters", "remove-member", "auto", "acme", "--by", "admin@hub")
    empty = lineqa(home, "pool", "--cluster", "auto", check=False)
    assert empty.returncode == 2 and "no tenant has contributed a dataset version to cluster 'auto'" in empty.stderr
    assert as_json(lineqa(home, "--json", "stats", "cluster/auto@2"))["images"] == 12  # type: ignore[index]
    assert as_json(lineqa(home, "--json", "clusters", "list", "--tenant", "acme")) == []
    ended = as_json(lineqa(home, "--json", "clusters", "members", "auto"))[0]  # type: ignore[index]
    assert ended["removed_by"] == "admin@hub"  # type: ignore[index]

    # The platform pool is apart from the cluster's.
    assert lineqa(home, "pool", check=False).returncode == 2
