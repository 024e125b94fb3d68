"""Run one of llama.cpp's Python converters under Debian 12's torch 1.13.

    python3 run_converter.py SCRIPT.py [converter args...]

torch 1.13 has no float8 dtypes, but the converter names torch.float8_e4m3fn and
torch.float8_e5m2 in class-level lookup tables, so importing it fails. Before running the
script we give each missing name a distinct placeholder object: the tables build, and a
checkpoint that really holds float8 tensors can never match the placeholder (torch cannot
produce such tensors here), so no tensor is silently misread. The models smelt tests with
(bf16/f16/f32) never touch these entries. This file is smelt's own.
"""

import os
import runpy
import sys

import torch


class _MissingDtype:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name} (not available in torch {torch.__version__})"


for _name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, _name):
        setattr(torch, _name, _MissingDtype(_name))

# SMELT_ORACLE_SPM_VOCAB=1: the MoE Qwen classes take a SentencePiece tokenizer.model the way
# the dense Qwen2 class does (their own set_vocab only knows tokenizer.json), so a tiny
# Qwen3-MoE fixture with the sample's SentencePiece vocabulary can be converted; tensors
# and the architecture keys are still the MoE class's own.
if os.environ.get("SMELT_ORACLE_SPM_VOCAB") == "1":
    import conversion.qwen as _qwen

    _qwen.Qwen2MoeModel.set_vocab = _qwen.Qwen2Model.set_vocab
    _qwen.Qwen3MoeModel.set_vocab = _qwen.Qwen2Model.set_vocab

if len(sys.argv) < 2:
    sys.exit("usage: run_converter.py SCRIPT.py [args...]")
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
