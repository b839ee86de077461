"""Code comes out of a reply however the model wrapped it: one fenced block, a draft and a final block, helpers and
model in separate blocks, an unclosed fence, or no fence at all; a reply with no module says why."""
from __future__ import annotations

import pytest

from llm_loopback import fenced, leaky_module
from proposers.llm.extract import NoCode, apply_point, detect_backend, extract_code, space_manifest

GOOD = leaky_module("torch.where(x > 0, x, x * self.negative_slope)")


def test_one_fenced_block() -> None:
    assert extract_code(fenced(GOOD)) == GOOD


def test_several_blocks_take_the_last_complete_module() -> None:
    draft = leaky_module("x")
    reply = fenced(draft, "A first try:") + "\nOn reflection, better:\n" + fenced(GOOD) + "\n```bash\npip install x\n```"
    assert extract_code(reply) == GOOD


def test_helpers_and_model_in_separate_blocks_are_joined() -> None:
    helper = "import torch\n\ndef leaky(x, s):\n    return torch.where(x > 0, x, x * s)\n"
    model = ("import torch.nn as nn\n\nclass ModelNew(nn.Module):\n    def __init__(self, s):\n        super().__init__()\n"
             "        self.s = s\n\n    def forward(self, x):\n        return leaky(x, self.s)\n")
    out = extract_code(fenced(helper) + fenced(model))
    assert "def leaky" in out and "class ModelNew" in out


def test_no_fence_trailing_prose_is_trimmed() -> None:
    reply = "Sure.\n" + GOOD + "\nThis runs faster because it avoids a copy."
    assert extract_code(reply).strip() == GOOD.strip()


def test_unclosed_fence_from_a_cut_reply() -> None:
    assert extract_code("```python\n" + GOOD) == GOOD


@pytest.mark.parametrize("reply, why", [
    ("I cannot help with that.", "no ```python block"),
    ("```python\nclass ModelNew(nn.Module:\n    pass\n```", "does not parse"),
    ("```python\nimport torch\nx = 1\n```", "defines no top-level class ModelNew"),
])
def test_no_module_says_why(reply: str, why: str) -> None:
    with pytest.raises(NoCode, match=why):
        extract_code(reply)


@pytest.mark.parametrize("snippet, backend", [
    ("import triton\nimport triton.language as tl\n", "triton"),
    ("from torch.utils.cpp_extension import load_inline\nm = load_inline(name='a', cpp_sources=s, cuda_sources=c)\n",
     "cuda"),
    ("from torch.utils.cpp_extension import load_inline\nm = load_inline(name='a', cpp_sources=s)\n", "cpp"),
    ("lib = torch.mps.compile_shader(SRC)\n", "metal"),
    ("f = torch.compile(g)\n", "compile"),
    ("", "torch"),
])
def test_backend_follows_what_the_module_uses(snippet: str, backend: str) -> None:
    assert detect_backend(snippet + GOOD) == backend


def test_space_manifest_names_top_level_constants_and_points_apply() -> None:
    src = "BLOCK = 128\nUNROLL = 2\nSPACE = {'BLOCK': [64, 128, 256], 'UNROLL': [1, 2], 'GHOST': [1]}\n" + GOOD
    space = space_manifest(src)
    assert space == {"BLOCK": [64, 128, 256], "UNROLL": [1, 2]}       # GHOST is no constant of the module
    out = apply_point(src, {"BLOCK": 256, "UNROLL": 1})
    assert "BLOCK = 256\n" in out and "UNROLL = 1\n" in out and out.count("class ModelNew") == 1
    with pytest.raises(ValueError, match="GHOST"):
        apply_point(src, {"GHOST": 2})
