#!/usr/bin/env python
"""The demo: generate MNIST-1D, shard it, train a 1-D CNN with SeTaStream under Full and SeTa.

    python tools/demo.py [--train 40000] [--test 10000] [--epochs 16] [--out demo_out]

Steps: (1) generate MNIST-1D with the `mnist1d` package (procedural, no download);
(2) shard it with `tools/shard.py convert` (WebDataset tar, per-member zstd) and print `info`;
(3) train the same small CNN twice, streaming with `SeTaStream`: every sample every epoch
(Full), then SeTa pruning (the paper's CIFAR recipe: prune_ratio 0.1, 5 groups, window 0.9);
(4) print accuracy against what was saved: samples forwarded, bytes read, wall time; and
draw the curriculum of the SeTa run from its loss table.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from seta_stream import Full, Policy, SeTa, SeTaStream  # noqa: E402


def make_mnist1d(folder: str, train: int, test: int, seed: int) -> tuple[str, str]:
    paths = (os.path.join(folder, f"train-{train}.npz"), os.path.join(folder, f"test-{test}.npz"))
    if all(os.path.exists(p) for p in paths):
        print(f"[1/4] MNIST-1D already generated: {paths[0]}, {paths[1]}")
        return paths
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = train + test, train / (train + test), seed
    print(
        f"[1/4] generating MNIST-1D: {train:,} train + {test:,} test samples (mnist1d, seed {seed})"
    )
    t = time.perf_counter()
    d = make_dataset(args)
    np.savez(paths[0], x=d["x"].astype(np.float32), y=d["y"].astype(np.int64))
    np.savez(paths[1], x=d["x_test"].astype(np.float32), y=d["y_test"].astype(np.int64))
    print(f"      done in {time.perf_counter() - t:.0f}s")
    return paths


def shard_npz(src: str, dst: str) -> int:
    """`tools/shard.py convert SRC DST` as the demo shards: 5,000 samples a shard, zstd."""
    import shard  # tools/shard.py

    argv = ["convert", src, dst, "--samples-per-shard", "5000", "--compress", "zstd"]
    return shard.main([*argv, "--overwrite"])


class CNN(nn.Module):
    """The MNIST-1D paper's small convolutional baseline (three strided convs, one linear)."""

    def __init__(self, channels: int = 25, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.head = nn.Linear(channels * 5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x.unsqueeze(1)))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        return self.head(h.flatten(1))


def evaluate(model: nn.Module, test_shards: str) -> float:
    model.eval()
    correct = total = 0
    with (
        SeTaStream(test_shards, policy=Full(), losses=None, shuffle=False) as stream,
        torch.no_grad(),
    ):
        stream.set_epoch(0)
        for batch in DataLoader(stream, batch_size=1000):
            correct += int((model(batch["x.npy"]).argmax(1) == batch["y.npy"]).sum())
            total += len(batch["y.npy"])
    model.train()
    return correct / total


RECIPES = ("adamw_cosine", "adam_const", "sgd_step")


def make_optimizer(recipe: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """adamw_cosine: AdamW (weight decay 1e-4), the demo's; adam_const: Adam; sgd_step: SGD,
    momentum 0.9, weight decay 5e-4."""
    if recipe == "adamw_cosine":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    if recipe == "adam_const":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if recipe == "sgd_step":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    raise ValueError(f"recipe={recipe!r}: known recipes are {list(RECIPES)}")


def lr_at(recipe: str, lr: float, epoch: int, progress: float, epochs: int) -> float:
    """The learning rate of a step. `progress` in [0, 1) is the share of training done, counted
    over the pruned epochs' lengths (cosine); sgd_step divides by 10 at 50% and 75% of the
    epochs; adam_const keeps `lr`."""
    if recipe == "adamw_cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * progress))
    if recipe == "sgd_step":
        return lr * 0.1 ** sum(epoch >= m * epochs for m in (0.5, 0.75))
    return lr


def train(name: str, policy: Policy, shards: str, test_shards: str, args: Any) -> dict[str, Any]:
    """Train the CNN on `shards` under `policy`. `args.recipe` (default adamw_cosine) picks the
    optimizer and schedule (`make_optimizer`, `lr_at`); `args.quiet` hides the progress bar."""
    recipe = getattr(args, "recipe", "adamw_cosine")
    torch.manual_seed(args.seed)
    model = CNN()
    opt = make_optimizer(recipe, model, args.lr)
    losses = os.path.join(args.out, "runs", name, "losses")
    shutil.rmtree(os.path.dirname(losses), ignore_errors=True)
    t0 = time.perf_counter()
    forwarded = 0
    with SeTaStream(shards, policy=policy, losses=losses, seed=args.seed) as stream:
        loader = DataLoader(stream, batch_size=args.batch_size)
        quiet = getattr(args, "quiet", False)  # parallel benchmark runs: no bars
        bar = tqdm(range(args.epochs), desc=f"{name:>5}", unit="epoch", disable=quiet)
        for epoch in bar:
            stream.set_epoch(epoch)
            steps = stream.steps_per_epoch(args.batch_size)  # the schedule follows pruning
            for step, batch in enumerate(loader):
                progress = (epoch + step / steps) / args.epochs
                for g in opt.param_groups:
                    g["lr"] = lr_at(recipe, args.lr, epoch, progress, args.epochs)
                loss = F.cross_entropy(model(batch["x.npy"]), batch["y.npy"], reduction="none")
                stream.update(batch["__index__"], loss.detach())
                (loss * batch["__weight__"]).mean().backward()
                opt.step()
                opt.zero_grad()
                forwarded += len(loss)
            bar.set_postfix(kept=f"{len(stream) / stream.dataset.num_samples:.0%}")
        stats = stream.stats()["total"]
    wall = time.perf_counter() - t0
    return {
        "policy": name,
        "accuracy": evaluate(model, test_shards),
        "forwarded": forwarded,
        "bytes_read": stats["bytes_read"],
        "wall_s": wall,
        "losses": losses,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=40_000)
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", default="demo_out")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print("torch threads: 1 (small shared machines: intra-op threads fight the data loading)")
    os.makedirs(args.out, exist_ok=True)
    train_npz, test_npz = make_mnist1d(args.out, args.train, args.test, args.seed)

    import shard  # tools/shard.py

    shards, test_shards = (os.path.join(args.out, d) for d in ("mnist1d-train", "mnist1d-test"))
    print(f"[2/4] python tools/shard.py convert {train_npz} {shards} --compress zstd")
    for src, dst in ((train_npz, shards), (test_npz, test_shards)):
        if shard_npz(src, dst):
            return 1
    shard.main(["info", shards])

    print(f"[3/4] training a 1-D CNN for {args.epochs} epochs, streaming with SeTaStream")
    runs = [
        train("full", Full(), shards, test_shards, args),
        train(
            "seta",
            SeTa(epochs=args.epochs, prune_ratio=0.1, num_groups=5, window=0.9),
            shards,
            test_shards,
            args,
        ),
    ]
    full = runs[0]
    print("\n[4/4] accuracy against cost (same model, epochs, seed)")
    print("| policy | test acc | samples forwarded | saved | bytes read | wall s |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        saved = 1 - r["forwarded"] / full["forwarded"]
        print(
            f"| {r['policy']} | {r['accuracy']:.2%} | {r['forwarded']:,} | {saved:.1%} "
            f"| {r['bytes_read']:,} | {r['wall_s']:.1f} |"
        )
    seta_losses = runs[1]["losses"]
    plot = os.path.join(args.out, "seta-curriculum.png")
    inspect = os.path.join(HERE, "inspect_losses.py")
    if os.path.exists(inspect):
        import subprocess

        subprocess.run([sys.executable, inspect, seta_losses, "--plot", plot], check=False)
    summary = f"{seta_losses}/summary/*.parquet"
    print("\nLook at the loss table with polars:")
    print(
        f"  python -c \"import polars as pl; print(pl.scan_parquet('{summary}')"
        ".group_by('epoch').agg(pl.col('selected').sum()).sort('epoch').collect())\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
