"""PyTorch ``nn.LSTM`` / ``nn.GRU`` (batch-first), eager, on CUDA when available, else CPU.

On CPU it runs once with every free core and once with one thread (both are
reported; the comparison uses the better). Its computational path (oneDNN,
cuDNN or ATen's native loop) is read from the profiler, not assumed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, free_cores


def _kernel_path(call: Any) -> str:
    import torch

    with torch.profiler.profile() as prof:
        call()
    names = {e.key for e in prof.key_averages()}
    kernels = sorted(n for n in names if "_cudnn_rnn" in n or "mkldnn_rnn" in n)
    if any("_cudnn_rnn" in n for n in kernels):
        return "cuDNN (" + ", ".join(kernels) + ")"
    if kernels:
        return "oneDNN (" + ", ".join(kernels) + ")"
    ops = sorted(
        n for n in names if n.startswith("aten::") and any(k in n for k in ("gru", "lstm", "rnn", "cell", "mm"))
    )
    return "ATen native loop, per-step matmuls (" + ", ".join(ops)[:100] + ")"


def build(
    cell: str, mode: str, cfg: Config, xs: np.ndarray, *, torch_threads: tuple[int, ...] | None = None, **options: Any
) -> list[Impl]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(cfg.D, cfg.H, batch_first=True).to(device)
    x = torch.from_numpy(np.ascontiguousarray(xs)).to(device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def step() -> Any:
        if mode == "train":
            for p in module.parameters():
                p.grad = None
            ys, _ = module(x)
            loss = ys.square().mean()
            loss.backward()
        else:
            with torch.inference_mode():
                ys, _ = module(x)
            loss = ys.square().mean()
        sync()
        return loss

    if device == "cuda":
        thread_counts: tuple[int, ...] = (torch.get_num_threads(),)
    else:
        thread_counts = torch_threads or tuple(sorted({free_cores(), 1}, reverse=True))
    impls = []
    for threads in thread_counts:

        def run(threads: int = threads) -> Any:
            torch.set_num_threads(threads)
            return step()

        def device_peak(call: Any) -> int | None:
            if device != "cuda":
                return None
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            call()
            return int(torch.cuda.max_memory_allocated() - before)

        label = f"torch nn.{'LSTM' if cell == 'lstm' else 'GRU'}"
        label += " (cuda)" if device == "cuda" else f" ({threads} thread{'s' if threads > 1 else ''})"
        impls.append(
            Impl(
                label,
                "torch",
                "detected after the first call",
                run,
                lambda run=run: float(run()),
                device_peak=device_peak,
                extra={"threads": threads, "device": device, "probe_path": lambda run=run: _kernel_path(run)},
            )
        )
    return impls
