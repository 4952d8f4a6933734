r"""The project's chat format, and a torch-free renderer to check a template before training.

A conversation renders as

    <s><|system|>{content}</s>\n<|user|>{content}</s>\n<|assistant|>{content}</s>\n

- `<s>` once at the start, as every pretraining document starts with `<s>` (see data_prep.shards).
- Every turn ends with `</s>`, so generation stops at eos. The "\n" after it is a separator
  the model never has to produce: generation stops before it.
- `{% generation %}` wraps the assistant content and its `</s>`: TRL's assistant_only_loss
  trains on exactly those tokens (apply_chat_template(..., return_assistant_tokens_mask=True)).
- add_generation_prompt appends "<|assistant|>". The content follows a marker directly:
  markers are whole tokens but "\n" merges into pieces ("\n가"), so a "\n" after the marker
  would make the prompt's tokens differ from the start of prompt + answer, which TRL needs
  as a prefix to find where the completion starts.
- Only the roles system, user and assistant exist (each has one marker token); others raise.
Whitespace: every tag trims with `-`, so the template's own layout never leaks into the text,
whatever trim_blocks/lstrip_blocks the renderer sets (transformers sets both).
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from data_prep.tokenizer import specials as S

DEFAULT_CHAT_TEMPLATE = r"""{%- if bos_token -%}{{- bos_token -}}{%- endif -%}
{%- for message in messages -%}
  {%- if message['role'] not in ['system', 'user', 'assistant'] -%}
    {{- raise_exception("chat template: role must be system, user or assistant, got '" ~ message['role'] ~ "'") -}}
  {%- endif -%}
  {{- '<|' ~ message['role'] ~ '|>' -}}
  {%- if message['role'] == 'assistant' -%}
    {%- generation -%}{{- message['content'] ~ eos_token -}}{%- endgeneration -%}
  {%- else -%}
    {{- message['content'] ~ eos_token -}}
  {%- endif -%}
  {{- '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|assistant|>' -}}
{%- endif -%}"""

SAMPLE_CHAT = [
    {"role": "system", "content": "당신은 공공기관 민원 안내를 돕는 도우미입니다."},
    {"role": "user", "content": "여권 재발급은 어디서 하나요?"},
    {"role": "assistant", "content": "가까운 시·군·구청 여권과에서 신청할 수 있습니다."},
]


class ChatTemplateError(ValueError):
    pass


class _Generation(Extension):
    """`{% generation %}...{% endgeneration %}` as transformers defines it: records the character
    span of its body in the rendered text."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_span"), [], [], body).set_lineno(lineno)

    def _span(self, caller):
        text = caller()
        self.environment.kgov_generation.append(text)
        return text


def render(template: str, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> tuple[str, list[str]]:
    """The rendered text and the texts inside `{% generation %}`, as transformers would render them."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    env.kgov_generation = []
    try:
        text = env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                bos_token=S.BOS, eos_token=S.EOS, unk_token=S.UNK, pad_token=S.PAD)
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"tokenizer.chat_template: {type(e).__name__}: {e}") from None
    return text, list(env.kgov_generation)


def check(template: str) -> dict[str, Any]:
    """Render the sample chat; fail when the template breaks, warn-level facts go to the result."""
    full, spans = render(template, SAMPLE_CHAT)
    prompt, _ = render(template, SAMPLE_CHAT[:-1], add_generation_prompt=True)
    answer = SAMPLE_CHAT[-1]["content"]
    return {
        "rendered": full,
        "prompt": prompt,
        "has_generation": bool(spans),  # needed by sft.assistant_only_loss
        "generation_covers_answer": any(answer in s for s in spans),
        "ends_turn_with_eos": S.EOS in full[full.rfind(answer):],
        "prompt_is_prefix": full.startswith(prompt),
    }
