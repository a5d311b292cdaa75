"""`python -m daemon.worker.export CHECKPOINT_DIR OUT_DIR --base MODEL [--merged]`.

Writes a loadable LoRA adapter (`OUT_DIR/adapter`: adapter weights + config + tokenizer) and, with
`--merged`, the base model with the adapter merged in (`OUT_DIR/merged`, a plain transformers model).
Prints one JSON line describing what it wrote. The daemon runs it as a subprocess (no torch in the daemon).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "README.md")


def copy_adapter(checkpoint: Path, out: Path) -> list[str]:
    """Copy the adapter (and tokenizer) files of a checkpoint; no torch needed."""
    if not (checkpoint / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{checkpoint} holds no LoRA adapter (adapter_config.json missing)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ADAPTER_FILES:
        src = checkpoint / name
        if src.is_file():
            shutil.copy2(src, out / name)
            written.append(str(out / name))
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
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        files = copy_adapter(Path(args.checkpoint), out / "adapter")
        merged_dir = None
        if args.merged:
            files += merge(out / "adapter", args.base, out / "merged")
            merged_dir = str(out / "merged")
    except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"adapter_dir": str(out / "adapter"), "merged_dir": merged_dir, "files": files}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
