"""Training and evaluation speed of the platform's recommender, on the CPU or a GPU.

    python bench/train_speed.py [--users 6040] [--items 3416] [--seq-len N] [--batch-size N]
                                [--steps 20] [--device auto|cpu|cuda] [--out bench/results]

Measures, on synthetic sequences of the given size (ML-1M-shaped by default), the real training
step of ``pipelines.model.training`` (the NextItemObjective forward and backward plus the AdamW step):
training samples/s, sequence tokens/s (real item positions) and text tokens/s (item text through
the adapted layers), evaluation users/s (full-catalogue scoring with history excluded), and peak
memory (process RSS; on CUDA also peak GPU memory). On the CPU it also times the loss alone, the
chunked cross-entropy against the plain one on one batch's shape, medians of 7 interleaved runs. On CUDA it runs in bf16 autocast and reports
the achieved FLOP/s (counted with torch's FlopCounterMode) as a fraction of the card's peak dense
bf16 FLOP/s. Prints a table and writes ``bench/results/train_speed-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(PROJECT_ROOT))

# Dense bf16 tensor-core peaks (no sparsity) from the vendors' data sheets, by name fragment.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12, "H100": 989e12,
                   "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_bf16(name: str) -> float | None:
    for fragment, flops in PEAK_BF16_FLOPS.items():
        if fragment in name:
            return flops
    return None


def synthetic_sequences(users: int, items: int, seq_len: int, seed: int = 0) -> list[list[str]]:
    """Histories with ML-1M-like lengths (lognormal, median ~100, 20 to 2,000 items); training
    cuts them into windows of ``seq_len`` as a night does."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(4.6, 0.9, users).astype(int), 20, 2000)
    return [[f"i{j}" for j in rng.choice(items, size=n, replace=True)] for n in lengths]


def build(args: argparse.Namespace):
    import torch

    from pipelines.config import load_params
    from pipelines.model.recommender import Catalogue, RecommenderConfig, SequenceRecommender
    from pipelines.model.training import Runtime, Trainer, seed_everything, setup_runtime, training_examples

    params = load_params(PROJECT_ROOT / "params.yaml", environ={}).finetune
    args.seq_len = args.seq_len or params.max_seq_len
    args.batch_size = args.batch_size or params.batch_size
    params = params.updated(max_seq_len=args.seq_len, batch_size=args.batch_size, device=args.device)
    runtime: Runtime = setup_runtime(args.device)
    seed_everything(0)
    item_ids = [f"i{j}" for j in range(args.items)]
    texts = [f"Item {j}: a title, its genres and a one-line description" for j in range(args.items)]
    model = SequenceRecommender(RecommenderConfig.from_params(params, item_ids)).to(runtime.device)
    catalogue = Catalogue(model, item_ids, texts)
    histories = synthetic_sequences(args.users, args.items, args.seq_len)
    examples = training_examples(histories, catalogue, args.seq_len)
    trainer = Trainer(model, catalogue, params, runtime)
    return torch, model, catalogue, histories, examples, trainer, runtime


def time_training(torch, examples, trainer, runtime, steps: int, batch_size: int) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.model.training import trim_padding

    # The shuffled epoch order and padding cut of the real loop (Trainer.fit).
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0))

    def batch(i: int):
        rows = order[torch.arange(i * batch_size, (i + 1) * batch_size) % len(order)]
        return trim_padding(examples[rows]).to(runtime.device)

    def sync():
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(3):  # warm-up: allocator, kernels, autotuning
        trainer._step(batch(i), 1, 0)
    with FlopCounterMode(display=False) as counter:
        trainer._step(batch(3), 1, 0)
    flops_per_step = counter.get_total_flops()
    sync()
    started = time.perf_counter()
    positions = 0
    for i in range(steps):
        b = batch(4 + i)
        positions += int(((b[:, :-1] > 0) & (b[:, 1:] > 0)).sum())
        trainer._step(b, 1, 0)
    sync()
    seconds = time.perf_counter() - started
    text_tokens = steps * trainer.params.text_items_per_step * trainer.params.max_text_tokens
    return {"step_s": seconds / steps, "samples_per_s": steps * batch_size / seconds,
            "tokens_per_s": positions / seconds, "text_tokens_per_s": text_tokens / seconds,
            "flops_per_step": flops_per_step, "achieved_flops": flops_per_step * steps / seconds}


def time_evaluation(torch, model, catalogue, histories, users: int) -> dict[str, float]:
    from pipelines.ranking.scoring import EvalSet, evaluate_scorer, model_scorer

    chosen = histories[:users]
    eval_set = EvalSet([f"u{i}" for i in range(len(chosen))], [h[:-1] for h in chosen], [h[-1] for h in chosen])
    started = time.perf_counter()
    evaluate_scorer(model_scorer(model, catalogue), eval_set, catalogue.item_ids, 10)
    seconds = time.perf_counter() - started
    return {"eval_users": len(chosen), "eval_s": seconds, "eval_users_per_s": len(chosen) / seconds}


def time_loss(torch, positions: int, dim: int, items: int, repeats: int = 7) -> dict[str, float]:
    """The training loss's forward and backward on one batch's shape, side by side, interleaved:
    the chunked cross-entropy the loop uses on the CPU against ``F.cross_entropy`` of the full logits."""
    import statistics

    import torch.nn.functional as F

    from pipelines.model.training import catalogue_cross_entropy

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(positions, dim, generator=generator, requires_grad=True)
    table = torch.randn(items, dim, generator=generator, requires_grad=True)
    targets = torch.randint(0, items, (positions,), generator=generator)
    losses = {"chunked": lambda: catalogue_cross_entropy(hidden, table, targets),
              "plain": lambda: F.cross_entropy(hidden @ table.T, targets)}
    seconds: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, loss in losses.items():
            started = time.perf_counter()
            loss().backward()
            seconds[name].append(time.perf_counter() - started)
            hidden.grad = table.grad = None
    chunked, plain = (statistics.median(seconds[name][1:]) for name in losses)
    return {"loss_chunked_s": chunked, "loss_plain_s": plain, "loss_plain_over_chunked": plain / chunked}


def machine(torch, runtime) -> dict[str, Any]:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": runtime.device.type}
    if runtime.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(runtime.device)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3416)
    parser.add_argument("--seq-len", type=int, default=None, help="default: finetune.max_seq_len of params.yaml")
    parser.add_argument("--batch-size", type=int, default=None, help="default: finetune.batch_size of params.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    torch, model, catalogue, histories, examples, trainer, runtime = build(args)
    started = time.perf_counter()
    trainer._refresh_text()  # the whole catalogue's text vectors, as at each epoch's end
    refresh_s = time.perf_counter() - started
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures = time_training(torch, examples, trainer, runtime, args.steps, args.batch_size)
    figures.update(time_evaluation(torch, model, catalogue, histories, args.users))
    if runtime.device.type == "cpu":  # on a GPU the loop uses the fused kernel, not the chunks
        figures.update(time_loss(torch, args.batch_size * args.seq_len, model.config.hidden_dim, args.items))
    # One epoch of a night: every real position once, plus the epoch-end text refresh.
    epoch_positions = int(((examples[:, :-1] > 0) & (examples[:, 1:] > 0)).sum())
    figures["text_refresh_s"] = refresh_s
    figures["epoch_s_estimate"] = epoch_positions / figures["tokens_per_s"] + refresh_s
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = machine(torch, runtime)
    if runtime.device.type == "cuda":
        figures["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        peak = peak_bf16(info["gpu"])
        figures["precision"] = "bf16 autocast"
        figures["fraction_of_peak_bf16"] = figures["achieved_flops"] / peak if peak else None
    else:
        figures["precision"] = "float32"
    result = {"machine": info, "config": vars(args), "figures": figures}

    print(f"train_speed on {info.get('gpu', info['processor'])} ({info['device']}, {figures['precision']})")
    for key, value in figures.items():
        print(f"  {key:24s} {value:,.4g}" if isinstance(value, float) else f"  {key:24s} {value}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"train_speed-{runtime.device.type}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
