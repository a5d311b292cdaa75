"""Tool-result tokens get no gradient in TRL 1.16's GRPOTrainer driven by our rollout_func.

A real GRPOTrainer (tiny Qwen-format model, real HTTP tool) scores one generation batch through
`_generate_and_score_completions` -- the method its training step calls -- and then its loss is
back-propagated: the tool_mask TRL builds from our env_mask is 0 exactly on the tool-response tokens,
and the gradient reaching the hidden states that predict them is exactly zero, while model tokens get one.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.worker.episodes import EpisodeRunner
from daemon.worker.rewards import GraderReward
from daemon.worker.rollout import ToolRollout, rollout_dataset
from daemon.worker.tool_runtime import ToolBox
from tests.support.tool_model import call_block, steered, tiny_tool_model, tool_tokenizer
from tests.support.tool_server import ToolServer

ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


def test_tool_result_tokens_are_masked_out_of_the_loss(tmp_path: Path) -> None:
    import torch
    from trl import GRPOConfig, GRPOTrainer

    tok = tool_tokenizer()
    model = tiny_tool_model(tok, seed=1)
    counter = itertools.count()

    def script(context: str) -> str:
        """Both generations call add; then one answers right and one wrong (so advantages are not 0)."""
        n = next(counter)
        got = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", context, re.DOTALL)
        if not got:
            return call_block("add", a=12, b=30)
        return str(json.loads(got[-1])["sum"] - n % 2)

    row = {"messages": [{"role": "user", "content": "What is 12+30?"}], "item": {"answer": "42", "tools": [ADD]}}
    reward = GraderReward({"type": "string_check", "name": "answer", "operation": "eq",
                           "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    with ToolServer() as srv:
        runner = EpisodeRunner(tok, ToolBox({"add": api.HttpToolRuntime(url=srv.url("/add"))}),
                               max_episode_steps=4, max_completion_length=400)
        rollout = ToolRollout(runner, make_generate=lambda trainer: steered(trainer.model, tok, script))
        args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, num_generations=2,
                          max_completion_length=400, max_steps=1, beta=0.0, report_to="none",
                          remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0)
        reward_funcs: list[Any] = [reward]  # TRL's hint wants list[float | None] back (lists are invariant)
        trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args,
                              train_dataset=rollout_dataset([row] * 2), processing_class=tok, rollout_func=rollout)
        dataset: Any = trainer.train_dataset  # the Dataset given above (TRL types it as any dataset or None)
        batch = [dict(dataset[0]) for _ in range(2)]
        rollout.inputs = batch
        out = trainer._generate_and_score_completions(batch)
        assert srv.calls["/add"] == 2
    reward.close()

    ids, completion_mask, tool_mask = out["completion_ids"], out["completion_mask"], out["tool_mask"]
    assert out["advantages"].abs().sum() > 0  # one right, one wrong: a learning signal
    for b in range(2):
        real = completion_mask[b].bool()
        tool_text = tok.decode(ids[b][real & (tool_mask[b] == 0)])
        model_text = tok.decode(ids[b][real & (tool_mask[b] == 1)])
        assert tool_text == ('\n<|im_start|>user\n<tool_response>\n{"sum": 42}\n</tool_response><|im_end|>\n'
                             '<|im_start|>assistant\n')
        assert model_text == call_block("add", a=12, b=30) + "<|im_end|>" + ("42" if b == 0 else "41") + "<|im_end|>"

    # the gradient of the loss reaches the logits of model tokens only
    captured: list[torch.Tensor] = []

    def keep(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    # TRL scores with a fused LM head (no logits tensor): watch the final norm's output, which feeds only the
    # LM head, position by position -- its gradient at a position is zero exactly when that logit's is
    lm: Any = trainer.model  # the causal LM given above (TRL types it as a model, a Module or None)
    handle = lm.model.norm.register_forward_hook(keep)
    try:
        lm.zero_grad()
        trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets before each compute_loss
        loss = trainer.compute_loss(trainer.model, out)
        loss.backward()
    finally:
        handle.remove()
    [logits] = captured
    assert logits.grad is not None
    prompt_len = out["prompt_ids"].shape[1]
    # the hidden state at position prompt_len - 1 + j predicts completion token j
    grad = logits.grad[:, prompt_len - 1: prompt_len - 1 + ids.shape[1]].abs().sum(-1)
    loss_mask = (completion_mask * tool_mask).bool()
    assert torch.all(grad[~loss_mask] == 0), "tool-result (or padding) tokens received gradient"
    assert torch.all(grad[loss_mask] > 0), "a model token received no gradient"


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
