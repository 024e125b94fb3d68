#!/usr/bin/env bash
# qwen3moe against llama.cpp: converter file, llama-perplexity, KLD (see tests/e2e/arch_oracle).
exec "$(dirname "$0")/arch_oracle" qwen3moe
