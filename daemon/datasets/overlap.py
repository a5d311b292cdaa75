"""Train/validation overlap: exact (same normalised prompt) and near-duplicate (character 5-gram Jaccard).

Near-duplicates are found with MinHash + LSH banding, vectorised with numpy, so 100k x 10k rows take
seconds: signatures over each prompt's first `SIGNATURE_CHARS` characters propose candidate pairs,
which are then checked with the exact Jaccard similarity of the full prompts' 5-gram sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from daemon import api
from daemon.text import clip

SHINGLE = 5
NUM_PERM = 32
BANDS = 8
BAND_ROWS = NUM_PERM // BANDS
SIGNATURE_CHARS = 1_000
MAX_BUCKET = 20  # candidates per validation row per band
DEFAULT_THRESHOLD = 0.8
ESTIMATE_SLACK = 0.25  # 32 permutations: the estimate's std is <= 0.09, so 0.25 loses almost nothing
#: Part of the overlap cache's file name: bump it whenever signatures or candidate selection change, so a
#: report cached by an older algorithm is computed again (2: the unused 64-bit permutation draws dropped).
ALGORITHM_VERSION = 2
_rng = np.random.default_rng(20240607)
_BAND_MIX = (_rng.integers(1, 1 << 63, BAND_ROWS, dtype=np.uint64) | np.uint64(1))
_A32 = (_rng.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
_B32 = _rng.integers(0, 1 << 32, NUM_PERM, dtype=np.uint64).astype(np.uint32)


def exact_pairs(train: Sequence[str], train_lines: Sequence[int], valid: Sequence[str],
                valid_lines: Sequence[int]) -> list[tuple[int, int, int]]:
    """(valid row index, valid line, first train line) for every validation prompt also in training."""
    first: dict[str, int] = {}
    for prompt, line in zip(train, train_lines, strict=True):
        first.setdefault(prompt, line)
    out = []
    for i, (prompt, line) in enumerate(zip(valid, valid_lines, strict=True)):
        hit = first.get(prompt)
        if hit is not None:
            out.append((i, line, hit))
    return out


def _gram_hashes(blob: np.ndarray) -> np.ndarray:
    """A 32-bit polynomial hash of the 5-byte shingle starting at each position (in-place uint32 ops)."""
    n = len(blob) - SHINGLE + 1
    h = blob[:n].astype(np.uint32)
    with np.errstate(over="ignore"):
        for k in range(1, SHINGLE):
            np.multiply(h, np.uint32(0x01000193), out=h)
            np.add(h, blob[k:k + n], out=h, casting="unsafe")
        np.multiply(h, np.uint32(0x9E3779B1), out=h)
    return h


def signatures(prompts: Sequence[str]) -> np.ndarray:
    """MinHash signatures (rows x NUM_PERM, uint32) of each prompt's 5-byte shingles."""
    if not prompts:
        return np.zeros((0, NUM_PERM), dtype=np.uint32)
    encoded = [p.encode("utf-8", "replace")[:SIGNATURE_CHARS].ljust(SHINGLE, b"\0") for p in prompts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    encoded.append(b"\0" * (SHINGLE - 1))
    base = _gram_hashes(np.frombuffer(b"".join(encoded), dtype=np.uint8))
    del encoded
    starts = np.cumsum(lengths) - lengths
    # shingles that run into the next row never win a minimum
    spill = (starts + lengths - SHINGLE + 1)[:, None] + np.arange(SHINGLE - 1)[None, :]
    spill = spill.ravel()
    sig = np.empty((len(prompts), NUM_PERM), dtype=np.uint32)
    buf = np.empty_like(base)
    tmp = np.empty_like(base)
    with np.errstate(over="ignore"):
        for k in range(NUM_PERM):
            np.multiply(base, _A32[k], out=buf)
            np.add(buf, _B32[k], out=buf)
            np.right_shift(buf, np.uint32(15), out=tmp)
            np.bitwise_xor(buf, tmp, out=buf)
            buf[spill] = np.uint32(0xFFFFFFFF)
            sig[:, k] = np.minimum.reduceat(buf, starts)
    return sig


def _band_keys(sig: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        keys = np.zeros((sig.shape[0], BANDS), dtype=np.uint64)
        for r in range(BAND_ROWS):
            keys ^= sig[:, r::BAND_ROWS][:, :BANDS].astype(np.uint64) * _BAND_MIX[r]
            keys = (keys << np.uint64(7)) | (keys >> np.uint64(57))
    return keys


def _candidates(train_sig: np.ndarray, valid_sig: np.ndarray) -> np.ndarray:
    """Unique (valid index, train index) pairs sharing at least one LSH band."""
    tk, vk = _band_keys(train_sig), _band_keys(valid_sig)
    found = []
    for band in range(BANDS):
        order = np.argsort(tk[:, band], kind="stable")
        sorted_keys = tk[order, band]
        lo = np.searchsorted(sorted_keys, vk[:, band], side="left")
        hi = np.searchsorted(sorted_keys, vk[:, band], side="right")
        n = np.minimum(hi - lo, MAX_BUCKET)
        if not n.any():
            continue
        v_idx = np.repeat(np.arange(len(vk)), n)
        offs = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        t_idx = order[lo[v_idx] + offs]
        found.append(v_idx.astype(np.int64) * len(tk) + t_idx.astype(np.int64))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    flat = np.unique(np.concatenate(found))
    return np.stack([flat // len(tk), flat % len(tk)], axis=1)


def shingle_set(text: str) -> set[str]:
    if len(text) < SHINGLE:
        return {text}
    return {text[i:i + SHINGLE] for i in range(len(text) - SHINGLE + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def near_pairs(train: Sequence[str], train_lines: Sequence[int], valid: Sequence[str],
               valid_lines: Sequence[int], threshold: float = DEFAULT_THRESHOLD,
               skip_valid: set[int] | None = None) -> list[tuple[int, int, float]]:
    """(valid line, train line, similarity) of each validation row's most similar training row."""
    if not train or not valid:
        return []
    skip = skip_valid or set()
    train_sig, valid_sig = signatures(train), signatures(valid)
    cands = _candidates(train_sig, valid_sig)
    if not len(cands):
        return []
    # MinHash estimate first (vectorised); only plausible pairs get the exact Jaccard check
    estimate = (valid_sig[cands[:, 0]] == train_sig[cands[:, 1]]).mean(axis=1)
    cands = cands[estimate >= threshold - ESTIMATE_SLACK]
    best: dict[int, tuple[float, int]] = {}
    for vi, ti in cands.tolist():
        if vi in skip or valid[vi] == train[ti]:
            continue
        if abs(len(valid[vi]) - len(train[ti])) > (1 - threshold) * max(len(valid[vi]), len(train[ti])) + SHINGLE:
            continue  # Jaccard >= t needs the lengths within a factor t of each other
        sim = jaccard(valid[vi], train[ti])
        if sim >= threshold and sim > best.get(vi, (-1.0, 0))[0]:
            best[vi] = (sim, ti)
    return sorted((valid_lines[vi], train_lines[ti], round(sim, 4)) for vi, (sim, ti) in best.items())


def overlap_report(train: Sequence[str], train_lines: Sequence[int], valid: Sequence[str],
                   valid_lines: Sequence[int], threshold: float = DEFAULT_THRESHOLD,
                   max_pairs: int = 200) -> api.OverlapReport:
    exact = exact_pairs(train, train_lines, valid, valid_lines)
    near = near_pairs(train, train_lines, valid, valid_lines, threshold, skip_valid={i for i, _, _ in exact})
    return api.OverlapReport(
        exact=len(exact), near=len(near), threshold=threshold,
        exact_pairs=[api.OverlapPair(valid_line=v, train_line=t, similarity=1.0, prompt=clip(valid[i], 120))
                     for i, v, t in exact[:max_pairs]],
        near_pairs=[api.OverlapPair(valid_line=v, train_line=t, similarity=s) for v, t, s in near[:max_pairs]])


def as_problems(report: api.OverlapReport, label: str) -> list[dict[str, Any]]:
    """Exact overlap is an error, near-duplicates a warning (one problem per listed pair)."""
    out = [{"severity": "error", "file": label, "line": p.valid_line, "field": "messages", "code": "overlap",
            "message": f"prompt also in the training file at line {p.train_line}"} for p in report.exact_pairs]
    out += [{"severity": "warning", "file": label, "line": p.valid_line, "field": "messages",
             "code": "near_duplicate", "message": f"prompt is {p.similarity:.0%} similar to training line "
             f"{p.train_line}"} for p in report.near_pairs]
    return out
