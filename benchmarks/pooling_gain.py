"""What a cluster's base model is worth to one of its members: fine-tuned from it against trained from scratch,
on the member's own boards, with the same budget, over several seeds.

    LINEQA_HOME=/tmp/lqa-pool nice python benchmarks/pooling_gain.py                 # 3 seeds (hours on a CPU)

The set-up is the one the platform is for (issue 19): three tenants make printed circuit boards, each its own
designs. DeepPCB's board groups stand for the designs: ``acme`` holds group 13000 (198 boards), ``globex``
and ``initech`` the other six groups between them (802 boards); each splits its own boards train/val/test
60/20/20 by board (``--group-by name``: acme has one design only, and globex two, too few groups for three
splits). The three form the cluster ``pcb-makers``;
globex and initech contribute their versions (consent recorded), ``lineqa datasets pool --cluster`` builds
``cluster/pcb-makers@1``, and the cluster's base is trained on it (YOLO11n from its YAML), exported with the
parity gate and published to the registry as ``pcb-makers-base@1`` (a base too briefly trained to detect
anything fails that gate, and the benchmark stops there). acme contributed nothing, so the base has
never seen an acme design, and acme's held-out boards are new to both of its runs.

Then, per seed, acme trains twice with everything equal but the start (``--seed`` S, the same epochs, image
size, batch and learning rate): ``--base pcb-makers-base@1`` (the registry checks that acme is a member) and
``--base yolo11n.yaml``, side by side so they share the machine alike. Both are evaluated on acme's test split
with ``lineqa evaluate`` (after ``lineqa export``: the model evaluated is the ONNX file the line would
serve). Printed: each run's mAP50 and mAP50-95, then per metric the mean and the sample
standard deviation of each start and of the gain (base minus scratch, paired by seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from lineqa_steps import deeppcb_lines, deeppcb_subset, experiment_home, lineqa, train_at_once

REPO = Path(__file__).resolve().parent.parent
CLUSTER, BASE = "pcb-makers", "pcb-makers-base"
TENANT_GROUPS = {
    "acme": ("group13000",),
    "globex": ("group00041", "group20085"),
    "initech": ("group44000", "group50600", "group77000", "group92000"),
}
METRICS = ("mAP50", "mAP50-95")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared/datasets/deeppcb/PCBData")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per start (default 3)")
    parser.add_argument("--base-epochs", type=int, default=30, help="epochs of the cluster's base (default 30)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each member run (default 30)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr0", type=float, default=0.003, help="the same for both starts (default 0.003)")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def build_cluster(root: Path, home: Path) -> None:
    """The three tenants' datasets, the cluster, globex's and initech's contributions and the cluster pool."""
    lines = deeppcb_lines(root)
    for tenant, groups in TENANT_GROUPS.items():
        own = [line for line in lines if line.split("/", 1)[0] in groups]
        lineqa("datasets", "import", f"{tenant}/pcb", str(deeppcb_subset(root, own, home / "sources" / tenant)))
        lineqa("datasets", "split", f"{tenant}/pcb", "--ratios", "train=0.6,val=0.2,test=0.2", "--seed", "0",
               "--group-by", "name")  # fmt: skip
        lineqa("datasets", "snapshot", f"{tenant}/pcb", "--note", f"DeepPCB {', '.join(groups)}")
    lineqa("datasets", "clusters", "create", CLUSTER, "--by", "admin@hub")
    for tenant in TENANT_GROUPS:
        lineqa("datasets", "clusters", "add-member", CLUSTER, tenant, "--by", "admin@hub")
    for tenant in ("globex", "initech"):
        lineqa("datasets", "contribute", f"{tenant}/pcb@1", "--cluster", CLUSTER, "--by", f"qa-lead@{tenant}")
    lineqa("datasets", "pool", "--cluster", CLUSTER)


def summary(values: list[float], *, signed: bool = False) -> str:
    """Mean ± sample standard deviation; ``signed`` shows the sign (a gain may be negative)."""
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    mean = f"{statistics.mean(values):+.3f}" if signed else f"{statistics.mean(values):.3f}"
    return f"{mean} ± {spread:.3f}" if values else "-"


def main() -> int:
    args = parse()
    home = experiment_home(args.root)
    budget = ["--imgsz", str(args.imgsz), "--batch", str(args.batch), "--device", args.device, "--workers", "2"]
    build_cluster(args.root, home)
    lineqa("train", "--dataset", f"cluster/{CLUSTER}@1", "--tenant", "globex", "--base", "yolo11n.yaml",
           "--name", "cluster-base", "--epochs", str(args.base_epochs), *budget)  # fmt: skip
    lineqa("export", "cluster-base")
    lineqa("models", "publish", "cluster-base", "--name", BASE)

    scores: dict[str, list[dict[str, float]]] = {"base": [], "scratch": []}
    for seed in range(args.seeds):
        starts = {"base": f"{BASE}@1", "scratch": "yolo11n.yaml"}
        runs = {start: f"acme-{start}-seed{seed}" for start in starts}
        same = ["--seed", str(seed), "--epochs", str(args.epochs), "--set", f"lr0={args.lr0}", *budget]
        commands = [["train", "--dataset", "acme/pcb@1", "--base", starts[s], "--name", runs[s], *same] for s in starts]
        train_at_once(commands, home / "train-logs" / f"seed{seed}")
        for start, run in runs.items():
            out = home / "runs" / run / "eval" / "acme-test"
            lineqa("export", run)
            lineqa("evaluate", "--run", run, "--split", "test", "--out", str(out))
            metrics = json.loads((out / "metrics.json").read_text())
            scores[start].append({name: float(metrics[name]) for name in METRICS})
            print(f"seed {seed} {start:<8}" + "".join(f"{n} {metrics[n]:.3f}  " for n in METRICS), flush=True)

    print(f"\nacme's held-out boards, {args.seeds} seeds, {args.epochs} epochs at {args.imgsz} px per run; "
          f"cluster base {args.base_epochs} epochs on {CLUSTER}@1 (mean ± sample standard deviation)")  # fmt: skip
    print(f"{'metric':<10}{'from the cluster base':>24}{'from scratch':>18}{'gain':>18}")
    for name in METRICS:
        base = [s[name] for s in scores["base"]]
        scratch = [s[name] for s in scores["scratch"]]
        gain = [b - s for b, s in zip(base, scratch, strict=True)]
        print(f"{name:<10}{summary(base):>24}{summary(scratch):>18}{summary(gain, signed=True):>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
