/* eval_fixtures.h — fixtures shared by the forward-pass and perplexity tests: GGUFs of
 * samples/tiny-mixtral made by llama.cpp's converter (cached in $SMELT_BUILD/gguf), the
 * external reference GGUFs, and samples/reference.json. */
#ifndef SMELT_TESTS_EVAL_FIXTURES_H
#define SMELT_TESTS_EVAL_FIXTURES_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/common/testutil.h"

#define STORIES_GGUF "tests/fixtures/external/llama2c-stories260K-official/validation/reference_f32_from_bin_gguf-py.gguf"
#define STORIES_TEXT "tests/fixtures/external/llama2c-stories260K-official/validation/eval_tinystories.txt"
#define RANDOM_GGUF "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf"

void vf_build_dir(char *buf, size_t n);

/* Path of a GGUF of HF dir `model_rel` (repo-relative) as `type` (f32, f16, q8_0), making
 * it when needed; skips the test when llama.cpp's converter is not installed. */
void vf_gguf(const char *model_rel, const char *stem, const char *type, char *out, size_t n);

void vf_tiny(const char *type, char *out, size_t n);

/* samples/tiny-mixtral as an f32/f16/bf16 GGUF made by smelt's own converter (no oracle
 * needed), cached in $SMELT_BUILD/gguf as tiny-mixtral-smelt-TYPE.gguf. */
void vf_tiny_smelt(const char *type, char *out, size_t n);

json_t *vf_reference(void);

/* The llama.cpp CLI tool `name`, or NULL when not built. */
const char *vf_oracle_tool(const char *name);

#endif
