"""Rank-aware credit for a ranked list of candidate genes (after OpenAI's rare-disease RFT demo).

The model outputs its candidates best first: a JSON list (["FBN1", "TGFBR2"]), a JSON object
with a "genes" list, or plain text with one gene per line or comma-separated (leading "1." or "-"
bullets are ignored). item["reference_answer"] is the causal gene (a string, or a list of
acceptable symbols). Symbols compare case-insensitively.

score by the 1-based rank r of the first correct gene:
    r = 1      -> 1.0
    r = 2..5   -> 1.0 - 0.15 * (r - 1)           (0.85, 0.70, 0.55, 0.40)
    r = 6..20  -> 0.2 * (21 - r) / 15            (0.20 down to 0.013)
    absent, or ranked below 20 -> 0.0

With TOP_K set to an integer k, it scores top-k accuracy instead: 1.0 when the right gene is among the first k,
else 0.0. examples/gene-ranking/grader.json (written by examples/make_examples.py) is a `multi` grader of three
copies of this file: top_1 (TOP_K = 1), top_5 (TOP_K = 5) and rank_credit (as is), the reward being the rank
credit, so validation and re-scorings show top-1 and top-5 accuracy (OpenAI's rare-disease metrics) per grader.
"""

import json
import re

TOP_K = None
MAX_RANK = 20
BULLET = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s*")


def parse_genes(text):
    text = str(text).strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        value = value.get("genes")
    if isinstance(value, list):
        return [str(gene).strip() for gene in value if str(gene).strip()]
    genes = []
    for line in text.splitlines():
        for part in line.split(","):
            gene = BULLET.sub("", part).strip().strip("\"'`*")
            if gene:
                genes.append(gene)
    return genes


def rank_credit(rank):
    if rank == 1:
        return 1.0
    if rank <= 5:
        return 1.0 - 0.15 * (rank - 1)
    if rank <= MAX_RANK:
        return 0.2 * (MAX_RANK + 1 - rank) / 15
    return 0.0


def correct_rank(output, reference):
    """The 1-based rank of the first correct gene among the first MAX_RANK, or None."""
    answers = reference if isinstance(reference, list) else [reference]
    wanted = {str(a).strip().upper() for a in answers}
    for rank, gene in enumerate(parse_genes(output)[:MAX_RANK], start=1):
        if gene.upper() in wanted:
            return rank
    return None


def grade(sample, item):
    rank = correct_rank(sample["output_text"], item["reference_answer"])
    if TOP_K is not None:
        return 1.0 if rank is not None and rank <= TOP_K else 0.0
    return 0.0 if rank is None else rank_credit(rank)
