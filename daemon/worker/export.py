"""`python -m daemon.worker.export CHECKPOINT_DIR OUT_DIR --base MODEL_REF [--merged] [--card-stdin]`.

Writes a loadable LoRA adapter (`OUT_DIR/adapter`: adapter weights + config + tokenizer) and, with
`--merged`, the base model with the adapter merged in (`OUT_DIR/merged`, a plain transformers model),
loaded at the job's revision (`MODEL_REF` is `model_ref()`'s `org/name@rev`). With `--card-stdin`, the
model card the daemon wrote (stdin) becomes README.md in OUT_DIR and in each model directory, instead of
PEFT's template. Prints one JSON line describing what it wrote. The daemon runs it as a subprocess (no
torch in the daemon).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from daemon import api

# PEFT's README.md template is left behind: the export writes its own model card
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def copy_adapter(checkpoint: Path, out: Path, base: str | None = None) -> list[str]:
    """Copy the adapter (and tokenizer) files of a checkpoint; no torch needed.

    For a hub base pinned to a revision (`org/name@rev`), the adapter config names that revision, so
    PEFT's auto classes load the base the adapter was trained on.
    """
    if not (checkpoint / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} holds no LoRA adapter (adapter_config.json missing)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ADAPTER_FILES:
        src = checkpoint / name
        if src.is_file():
            shutil.copy2(src, out / name)
            written.append(str(out / name))
    model = api.SnapshotModel.of(base) if base else None
    if model is not None and model.source == "hub" and model.revision:
        config_path = out / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config.update(base_model_name_or_path=model.id, revision=model.revision)
        config_path.write_text(json.dumps(config, indent=2))
    return written


def write_card(card: str, dirs: list[Path]) -> list[str]:
    """README.md (the model card) in each directory given."""
    written = []
    for d in dirs:
        (d / "README.md").write_text(card, encoding="utf-8")
        written.append(str(d / "README.md"))
    return written


def merge(adapter_dir: Path, base: str, out: Path) -> list[str]:
    from peft import PeftModel

    from daemon.models import load_model, load_tokenizer
    from daemon.paths import Paths

    paths = Paths.resolve()
    model = load_model(base, paths)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    load_tokenizer(base, paths).save_pretrained(out)
    return sorted(str(p) for p in out.iterdir())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m daemon.worker.export")
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--base", required=True)
    ap.add_argument("--merged", action="store_true")
    ap.add_argument("--card-stdin", action="store_true", help="read the model card (README.md) from stdin")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        card = sys.stdin.read() if args.card_stdin else None
        files = copy_adapter(Path(args.checkpoint), out / "adapter", args.base)
        merged_dir = None
        if args.merged:
            files += merge(out / "adapter", args.base, out / "merged")
            merged_dir = str(out / "merged")
        if card:
            dirs = [out, out / "adapter"] + ([out / "merged"] if merged_dir else [])
            files = [f for f in files if not f.endswith("README.md")] + write_card(card, dirs)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"adapter_dir": str(out / "adapter"), "merged_dir": merged_dir, "files": files,
                      "model_card": str(out / "README.md") if card else None}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
