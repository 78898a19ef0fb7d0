# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# *(OWNER/REPO in the link is set by `python notebooks/execute.py` from `Repository`
# under `[project.urls]` in pyproject.toml, which does not name the repository yet.)*
#
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/03_benchmarks.ipynb
#
# # Benchmarks on a GPU or TPU runtime
#
# The repository's benchmark harness (`benchmarks/`, see its README) run on
# whatever backend JAX finds: recurrax's LSTM training step against Flax NNX
# and against **the floor** (the `T` sequential recurrent matmuls alone, which
# no sequential LSTM can beat), then the linear recurrences' sequential scan
# against the parallel (associative) scan.
#
# **Choosing the runtime on Colab**: *Runtime → Change runtime type →
# Hardware accelerator*, pick a GPU (T4 on the free tier) or a TPU, save, then
# *Runtime → Run all*. Colab's runtimes come with a JAX built for their
# accelerator. If installing recurrax upgrades `jax` (pip prints it), install
# the matching accelerator build too, `pip install -U "jax[cuda12]"` on a GPU
# or `pip install -U "jax[tpu]"` on a TPU, and restart the runtime
# (*Runtime → Restart session*) before running the cells again.
#
# The committed outputs are a **CPU** run at the small default size: the test
# suite re-executes it to check that the harness runs and prints the same
# tables, never comparing the times, which are wall-clock. Set `FULL = True`
# for the harness's own sizes (on a GPU: a few minutes).

# %%
# Where recurrax comes from, the one setting to change (notebooks/README.md):
#   None: the copy that is importable here (a clone installed with `pip install -e ".[tasks]"`);
#   else a pip source: a wheel ("dist/recurrax-0.1.0-py3-none-any.whl"), a clone ("../recurrax"),
#   or the repository's git URL ("git+https://github.com/OWNER/NAME.git", add "@TAG" to pin it).
RECURRAX_SOURCE = None
import importlib.util
import subprocess
import sys
from pathlib import Path

if RECURRAX_SOURCE is not None:
    url = RECURRAX_SOURCE if "://" in RECURRAX_SOURCE else Path(RECURRAX_SOURCE).resolve().as_uri()
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", f"recurrax[tasks] @ {url}"])
elif importlib.util.find_spec("recurrax") is None:
    raise ModuleNotFoundError("recurrax is not installed: set RECURRAX_SOURCE to a wheel, a clone or a git URL")

FULL = False  # True: the benchmark's own configurations, more repeats, every installed peer

# %% [markdown]
# The harness lives in the repository, not in the installed package: this
# cell finds a clone (this notebook's, or the one recurrax was installed
# from), or clones the repository when `RECURRAX_SOURCE` is a git URL.

# %%
import re

import recurrax


def benchmarks_root():
    here = [Path.cwd(), *Path.cwd().parents, Path(recurrax.__file__).resolve().parents[2]]
    if RECURRAX_SOURCE is not None and "://" not in RECURRAX_SOURCE:
        here.insert(0, Path(RECURRAX_SOURCE).resolve())
    for root in here:
        if (root / "benchmarks" / "run.py").is_file():
            return root
    git = re.fullmatch(r"git\+(.+?)(?:@([^/@]+))?", RECURRAX_SOURCE or "")
    if git is None:
        raise FileNotFoundError("benchmarks/ is in the repository: set RECURRAX_SOURCE to a clone or its git URL")
    url, ref = git.groups()
    clone = Path("recurrax-repository")
    if not clone.is_dir():
        subprocess.check_call(["git", "clone", "--quiet", url, str(clone)])
        if ref:
            subprocess.check_call(["git", "-C", str(clone), "checkout", "--quiet", ref])
    return clone.resolve()


sys.path.insert(0, str(benchmarks_root()))
import contextlib
import io

import jax
import matplotlib.pyplot as plt
from benchmarks import run as bench
from benchmarks.common import PEER_CONFIGS, Config
from IPython.display import Markdown, display

print("backend:", jax.default_backend(), "| devices:", ", ".join(d.device_kind for d in jax.devices()))

# %% [markdown]
# ## recurrax against Flax NNX and the floor
#
# One training step: forward over the whole sequence, the loss `mean(ys²)`,
# and the gradient of every parameter, timed after compiling and one warm-up
# call over interleaved repeats (the median). `× floor` is the time over the
# floor's; recurrax's fused path (the default) and its plain step loop
# (`fused=False`) are both shown.

# %%
CONFIGS = PEER_CONFIGS[:2] if FULL else [Config(B=8, T=32, D=16, H=32)]
PEERS = list(bench.PEERS) if FULL else ["floor", "recurrax_peer", "flax_nnx"]
REPEATS = 7 if FULL else 3

# The harness logs its progress to stderr; it is kept here, not printed.
with contextlib.redirect_stderr(io.StringIO()):
    blocks = bench.suite_peers(CONFIGS, ["lstm"], ["train"], REPEATS, PEERS, {})

# %% tags=["timings"]
lines = []
for block in blocks:
    cfg = Config(**block["config"])
    lines += [
        f"**LSTM training step, {cfg.label}** ({jax.default_backend()})",
        "",
        "| implementation | ms | tokens/s | × floor | path |",
        "|---|---:|---:|---:|---|",
    ]
    for row in block["rows"]:  # the harness's order: the same on every run
        if "median_s" not in row:
            lines.append(f"| {row['impl']} | error: {row.get('error', '?')} | | | |")
            continue
        lines.append(
            f"| {row['impl']} | {1e3 * row['median_s']:.2f} | {row['tokens_per_s']:,.0f} | "
            f"{row['ratio_to_floor']:.2f} | {row['path']} |"
        )
    lines += [f"| {s['peer']} | skipped: {s['reason'][:60]} | | | |" for s in block["skipped"]]
    lines.append("")
display(Markdown("\n".join(lines)))

# %% tags=["timings"]
fig, axes = plt.subplots(1, len(blocks), figsize=(6 * len(blocks), 3), squeeze=False)
for ax, block in zip(axes[0], blocks, strict=True):
    rows = [r for r in block["rows"] if "median_s" in r]
    ax.barh([r["impl"] for r in rows], [1e3 * r["median_s"] for r in rows])
    ax.set_xlabel("ms per training step (median)")
    ax.set_title(f"{Config(**block['config']).label}, {jax.default_backend()}")
    ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Linear recurrences: sequential against parallel scan
#
# A linear recurrence `h_t = a_t ⊙ h_{t-1} + b_t` (minGRU, minLSTM, LRU) can
# run as a sequential loop (`T` dependent steps) or as an associative scan
# (`log T` depth, more work). On a CPU the loop usually wins; on a GPU or TPU
# the parallel scan pulls ahead as `T` grows (the small default's two short
# sequences only show that it runs). Training step, B=16, D=64, H=256.

# %%
STEPS_T = [256, 1024, 4096, 16384] if FULL else [16, 64]
CELLS = ["min_gru", "min_lstm", "lru"] if FULL else ["min_gru"]
with contextlib.redirect_stderr(io.StringIO()):
    linear = bench.suite_linear(STEPS_T, REPEATS, CELLS, modes=["train"], two_layer=FULL)

# %% tags=["timings"]
fig, ax = plt.subplots(figsize=(6, 3.5))
for cell in CELLS:
    for method, style in (("sequential", "o-"), ("parallel", "s--")):
        # Training steps only (the suite also times forward passes and a hand-written scan).
        rows = [r for r in linear if r["cell"] == cell and r["method"] == method and r.get("mode", "train") == "train"]
        ax.plot([r["config"]["T"] for r in rows], [1e3 * r["median_s"] for r in rows], style, label=f"{cell} {method}")
        times = ", ".join(f"T={r['config']['T']} {1e3 * r['median_s']:.2f} ms" for r in rows)
        print(f"{cell:>8} {method:>10}: {times}")
ax.set(xscale="log", yscale="log", xlabel="T", ylabel="ms per training step", title=jax.default_backend())
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The full harness, from a clone, writes every sample with the machine and
# versions to `benchmarks/results/<backend>.json` and the tables to `.md`:
#
# ```
# python -m benchmarks.run --quick     # the first configuration, 3 repeats
# python -m benchmarks.run             # every suite
# ```
