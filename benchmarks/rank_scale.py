"""Benchmark: spuriosity rankings + spurious gaps at ImageNet scale from a float16 memmap.

    python benchmarks/rank_scale.py [--quick] [--json] [--n N] [--dim D] [--classes K] [--keep DIR]

Generates a synthetic feature store (N x D float16 ``.npy``; default 1,281,167 x 2048 = 5.2 GB,
1000 classes, 5 spurious features each) on disk in a temp dir, chunk by chunk (never whole in RAM;
generation time is excluded from the measurement), then runs in two fresh subprocesses:

- ``streamed``: `core.audit.spuriosity.compute_spuriosity` + `core.audit.gaps.spurious_gaps` on the
  ``np.load(mmap_mode='r')`` memmap (sequential row blocks, only 5 columns kept per row);
- ``naive``: a straightforward all-in-memory numpy version (``np.load`` the whole array, then per
  class: fancy-index the rows, z-score, argsort, gap with index-resampling bootstrap).

Each worker reports wall time and its peak RSS (VmHWM); the two results are checked equal.
Targets (full size): streamed <= 10 s and peak RSS <= 3 GB on 2 cores. Prints a table; ``--json``
prints one JSON object instead.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(dirpath: Path, n: int, dim: int, classes: int, n_spur: int, seed: int = 0) -> None:
    """Write features.npy (n, dim) float16 chunk by chunk, plus labels/preds/spurious."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n).astype(np.int64)
    spurious = np.stack([rng.choice(dim, size=n_spur, replace=False) for _ in range(classes)])  # (K, 5)
    # Plant a cue: a per-row strength s; the class's spurious columns get + 2 s, and the model is more
    # often right when s is high (so gaps are positive).
    strength = rng.standard_normal(n).astype(np.float32)
    p_correct = 1 / (1 + np.exp(-(0.5 + 1.5 * strength)))
    correct = rng.random(n) < p_correct
    preds = np.where(correct, labels, (labels + rng.integers(1, classes, size=n)) % classes)
    np.save(dirpath / "labels.npy", labels)
    np.save(dirpath / "preds.npy", preds.astype(np.int64))
    np.save(dirpath / "spurious.npy", spurious)
    chunk = 32768
    base = rng.random((chunk, dim), dtype=np.float32)
    with open(dirpath / "features.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                 "shape": (n, dim)})
        for row0 in range(0, n, chunk):
            rows = min(chunk, n - row0)
            # cheap per-chunk variation of a shared random base (generation speed is not measured)
            block = np.roll(base[:rows], shift=int(rng.integers(0, dim)), axis=1) * float(rng.uniform(0.5, 2))
            lab = labels[row0:row0 + rows]
            cols = spurious[lab]                                             # (rows, 5)
            np.put_along_axis(block, cols,
                              np.take_along_axis(block, cols, axis=1) + 2 * strength[row0:row0 + rows, None],
                              axis=1)
            block.astype(np.float16).tofile(fh)


def _peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM; ru_maxrss would carry the parent's over exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_streamed(dirpath: Path, n_boot: int) -> dict:
    from core.audit.gaps import GapConfig, spurious_gaps
    from core.audit.spuriosity import compute_spuriosity

    feats = np.load(dirpath / "features.npy", mmap_mode="r")
    labels = np.load(dirpath / "labels.npy")
    preds = np.load(dirpath / "preds.npy")
    spurious = np.load(dirpath / "spurious.npy")
    t0 = time.perf_counter()
    res = compute_spuriosity(feats, labels, {c: list(s) for c, s in enumerate(spurious)},
                             num_classes=len(spurious))
    t1 = time.perf_counter()
    gaps = spurious_gaps(res, preds, config=GapConfig(n_boot=n_boot, seed=0))
    t2 = time.perf_counter()
    np.save(dirpath / "scores_streamed.npy", res.scores)
    return {"rank_s": t1 - t0, "gaps_s": t2 - t1, "total_s": t2 - t0,
            "peak_rss_mb": _peak_rss_mb(),
            "pooled_gap": gaps.pooled["gap"], "mean_class_gap": gaps.pooled["mean_class_gap"]}


def worker_naive(dirpath: Path, n_boot: int) -> dict:
    labels = np.load(dirpath / "labels.npy")
    preds = np.load(dirpath / "preds.npy")
    spurious = np.load(dirpath / "spurious.npy")
    t0 = time.perf_counter()
    feats = np.load(dirpath / "features.npy")                    # whole array in RAM
    scores = np.full(len(labels), np.nan, dtype=np.float32)
    rng = np.random.default_rng(0)
    hi_acc, lo_acc, gaps = [], [], []
    for c in range(len(spurious)):
        idx = np.nonzero(labels == c)[0]
        x = feats[idx][:, spurious[c]].astype(np.float32)          # (n_c, 5)
        z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
        s = z.mean(1)
        scores[idx] = s
        order = idx[np.argsort(s, kind="stable")]
        k = max(1, min(100, len(idx) // 4))
        corr_lo = preds[order[:k]] == c
        corr_hi = preds[order[-k:]] == c
        gaps.append(corr_hi.mean() - corr_lo.mean())
        hi_acc.append(corr_hi.sum())
        lo_acc.append(corr_lo.sum())
        if n_boot:
            bh = corr_hi[rng.integers(0, k, size=(n_boot, k))].mean(1)
            bl = corr_lo[rng.integers(0, k, size=(n_boot, k))].mean(1)
            np.quantile(bh - bl, [0.025, 0.975])
    t1 = time.perf_counter()
    np.save(dirpath / "scores_naive.npy", scores)
    return {"total_s": t1 - t0, "peak_rss_mb": _peak_rss_mb(),
            "mean_class_gap": float(np.mean(gaps))}


def _evict(path: Path) -> None:
    """Drop this file's pages from the page cache (cold-cache measurement; affects only this file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _run_worker(kind: str, dirpath: Path, n_boot: int, threads: int, cold: bool = False) -> dict:
    if cold:
        _evict(dirpath / "features.npy")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--dir", str(dirpath),
                          "--n-boot", str(n_boot)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small N (100,000) for a fast check")
    p.add_argument("--json", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--n-spurious", type=int, default=5)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--cold", action="store_true",
                   help="evict the feature file from the page cache before each version (disk-bound worst case)")
    p.add_argument("--keep", type=Path, default=None, help="reuse/keep the generated data in this folder")
    p.add_argument("--worker", choices=["streamed", "naive"], help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        fn = worker_streamed if a.worker == "streamed" else worker_naive
        print(json.dumps(fn(a.dir, a.n_boot)))
        return 0
    n = a.n or (100_000 if a.quick else 1_281_167)
    tmp = a.keep or Path(tempfile.mkdtemp(prefix="rank_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        fpath = tmp / "features.npy"
        if not (fpath.exists() and np.load(fpath, mmap_mode="r").shape == (n, a.dim)):
            generate(tmp, n, a.dim, a.classes, a.n_spurious)
        gen_s = time.perf_counter() - t0
        streamed = _run_worker("streamed", tmp, a.n_boot, a.threads, a.cold)
        result = {"cache": "cold" if a.cold else "warm (as left by generation / earlier runs)", "n": n, "dim": a.dim, "classes": a.classes, "n_spurious": a.n_spurious,
                  "file_gb": fpath.stat().st_size / 1e9, "generation_s (excluded)": gen_s,
                  "n_boot": a.n_boot, "streamed": streamed}
        if not a.skip_naive:
            naive = _run_worker("naive", tmp, a.n_boot, a.threads, a.cold)
            s1 = np.load(tmp / "scores_streamed.npy")
            s2 = np.load(tmp / "scores_naive.npy")
            result["naive"] = naive
            result["speedup_vs_naive"] = naive["total_s"] / streamed["total_s"]
            result["rss_ratio_naive_over_streamed"] = naive["peak_rss_mb"] / streamed["peak_rss_mb"]
            result["max_abs_score_diff"] = float(np.nanmax(np.abs(s1 - s2)))
        result["meets_targets"] = bool(streamed["total_s"] <= 10 and streamed["peak_rss_mb"] <= 3072) \
            if n >= 1_281_167 else None
    finally:
        if a.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"rank_scale: N={n:,} D={a.dim} K={a.classes} ({result['file_gb']:.2f} GB float16 memmap), "
              f"generation {gen_s:.1f} s (excluded); page cache: {result['cache']}")
        print(f"{'version':<10}{'time (s)':>10}{'peak RSS (MB)':>16}")
        print(f"{'streamed':<10}{streamed['total_s']:>10.2f}{streamed['peak_rss_mb']:>16.0f}"
              f"   (rank {streamed['rank_s']:.2f} s, gaps {streamed['gaps_s']:.2f} s)")
        if "naive" in result:
            print(f"{'naive':<10}{result['naive']['total_s']:>10.2f}{result['naive']['peak_rss_mb']:>16.0f}")
            print(f"speed-up {result['speedup_vs_naive']:.2f}x, RSS ratio "
                  f"{result['rss_ratio_naive_over_streamed']:.1f}x, max |score diff| "
                  f"{result['max_abs_score_diff']:.2e}")
        print(f"pooled gap {streamed['pooled_gap']:.3f}, mean class gap {streamed['mean_class_gap']:.3f}; "
              f"targets met: {result['meets_targets']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
