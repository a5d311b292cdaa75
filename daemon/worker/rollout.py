"""Agent RFT in training: TRL's `rollout_func` playing multi-turn episodes with the job's tools.

Why a rollout_func and not GRPOTrainer's own `tools=`: TRL's tools are Python callables fixed for the
whole run, described to the model by their signatures; ours are per-row JSON schemas (OpenAI's `tools`)
served by the user's HTTP endpoints or sandboxed python, called with the row's item, with retries,
timeouts and a trajectory (latencies, errors) to store. TRL's loop also parses calls only for templates
it recognises and turns a malformed call into plain text. With a rollout_func we play the episode
ourselves (daemon.worker.episodes, the same loop validation and pre-flight use) and hand TRL exactly
what its loss needs: prompt ids, completion ids (model turns and tool results in order) and `env_mask`
(1 = model token, 0 = tool result), which TRL multiplies into the loss mask -- so only model tokens
are trained. Each episode also goes to the reward function (`episode`), whose final answer is graded.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any

from daemon.worker.episodes import Episode, EpisodeRow, EpisodeRunner, Generate, episode_metrics, hf_generate
from daemon.worker.prompts import chat_messages, row_tools


def rollout_dataset(rows: list[dict[str, Any]]) -> Any:
    """Conversational prompts (the rollout renders them with each row's tools) + the item as JSON."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": chat_messages(r["messages"]),
                               "item_json": json.dumps(r["item"], ensure_ascii=False)} for r in rows])


def trainer_generate(trainer: Any) -> Generate:
    """Sampling with the trainer's own generation settings (temperature, top_p, ...) on its current weights."""
    from trl.models import unwrap_model_for_generation

    tok = trainer.processing_class
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = list(trainer.eos_token_ids) if getattr(trainer, "eos_token_ids", None) else [tok.eos_token_id]

    def generate(sequences: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        config = copy.deepcopy(trainer.generation_config)
        config.max_new_tokens = max_new_tokens
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         generation_kwargs=trainer.generation_kwargs) as model:
            return hf_generate(model, pad, eos, trainer.accelerator.device, generation_config=config)(
                sequences, max_new_tokens)

    return generate


class ToolRollout:
    """The rollout_func: `__call__(prompts, trainer)` -> ids, env_mask and the episodes, one per prompt."""

    def __init__(self, runner: EpisodeRunner, make_generate: Callable[[Any], Generate] = trainer_generate) -> None:
        self.runner = runner
        self.make_generate = make_generate  # trainer -> Generate (the trainer's sampling on its current weights)
        self.inputs: list[dict[str, Any]] = []  # the generation batch TRL is scoring (set by the worker's hook)
        self._lock = threading.Lock()
        self._episodes: list[Episode] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        rows = self.rows(prompts)
        episodes = self.runner.run(self.make_generate(trainer), rows)
        with self._lock:
            self._episodes += episodes
        return {"prompt_ids": [e.prompt_ids for e in episodes],
                "completion_ids": [e.completion_ids for e in episodes],
                "logprobs": None,
                "env_mask": [e.mask for e in episodes],
                "episode": [e.grader_sample() for e in episodes]}

    def rows(self, prompts: list[Any]) -> list[EpisodeRow]:
        """Each prompt's episode start: its messages, and its row's tools and item from TRL's inputs."""
        inputs = self.inputs if len(self.inputs) == len(prompts) else [{} for _ in prompts]
        rows = []
        for prompt, inp in zip(prompts, inputs, strict=True):
            item = json.loads(inp.get("item_json") or "{}")
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            rows.append(EpisodeRow(messages=chat_messages(messages), tools=row_tools({"item": item}), item=item))
        return rows

    def take_episodes(self) -> list[Episode]:
        """The episodes played since the last call (one training step's, this process's)."""
        with self._lock:
            episodes, self._episodes = self._episodes, []
        return episodes

    def drain_metrics(self) -> dict[str, float]:
        """The tools/* numbers over the episodes since the last call (one process)."""
        return episode_metrics(self.take_episodes())
