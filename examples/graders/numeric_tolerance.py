"""Numeric answer with tolerance and partial credit by relative error.

item: {"answer": "3.14159", "tolerance": 0.001}   (tolerance is relative, optional, default 1e-6)
score: 1.0 when |output - answer| <= tolerance * max(1, |answer|);
       otherwise 0.5 * max(0, 1 - relative_error), so a near miss earns up to 0.5 and anything
       100% or more off earns 0; no number in the output earns 0.
The output's last number counts (models tend to reason first and answer last).
"""

import re

NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(text):
    matches = NUMBER.findall(str(text))
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def grade(sample, item):
    answer = parse_number(item["answer"])
    guess = parse_number(sample["output_text"])
    if answer is None or guess is None:
        return 0.0
    tolerance = float(item.get("tolerance", 1e-6))
    error = abs(guess - answer)
    if error <= tolerance * max(1.0, abs(answer)):
        return 1.0
    relative_error = error / max(abs(answer), 1e-12)
    return 0.5 * max(0.0, 1.0 - relative_error)
