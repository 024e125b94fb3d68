/* Size-budget plans (quant/target.h): the choice under a budget, the error estimates, the
 * tensor classes, and the refusal of replayed plans that do not fit the model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/pool.h"
#include "formats/ggml_types.h"
#include "quant/quantize.h"
#include "quant/target.h"
#include "tests/common/quantize_plans.h"

/* ==== the choice ==== */

/* uniform in [0, 1) */
static double unit(uint64_t *seed) { return qr_rand(seed) / 0.07 + 0.5; }

static smelt_target_item item3(uint64_t b0, double c0, uint64_t b1, double c1, uint64_t b2, double c2)
{
    smelt_target_item it = {.n_cand = 3, .type = {1, 2, 3}, .bytes = {b0, b1, b2}, .cost = {c0, c1, c2}};
    return it;
}

Test(target, solve_takes_the_best_savings_per_byte)
{
    smelt_err e;
    smelt_target_item it[2] = {item3(10, 10, 20, 4, 30, 3), item3(10, 10, 20, 8, 30, 1)};
    uint64_t total;
    /* item 0 saves 0.6 then 0.1 per byte; item 1's middle point is above its hull, whose one
     * step (10,10)-(30,1) saves 0.45 per byte. 10 spare bytes: item 0's first step. */
    cr_assert_eq(smelt_target_solve(it, 2, 30, &total, &e), 0);
    cr_assert_eq(total, 30);
    cr_assert(it[0].chosen == 1 && it[1].chosen == 0);
    /* 20 spare: item 0's first step, then only its second fits (a greedy choice: item 1's
     * hull step alone would cost 11, not 13) */
    cr_assert_eq(smelt_target_solve(it, 2, 40, &total, &e), 0);
    cr_assert_eq(total, 40);
    cr_assert(it[0].chosen == 2 && it[1].chosen == 0);
    /* 30 spare: item 0's first step (0.6 per byte), then item 1's hull step (0.45) */
    cr_assert_eq(smelt_target_solve(it, 2, 50, &total, &e), 0);
    cr_assert_eq(total, 50);
    cr_assert_eq(it[0].chosen, 1);
    cr_assert_eq(it[1].chosen, 2);
    cr_assert_eq(smelt_target_solve(it, 2, 1000, &total, &e), 0);
    cr_assert_eq(total, 60);
    cr_assert(it[0].chosen == 2 && it[1].chosen == 2);
}

Test(target, solve_refuses_a_budget_below_the_smallest_plan)
{
    smelt_err e;
    smelt_target_item it[2] = {item3(10, 10, 20, 4, 30, 3), item3(10, 10, 20, 8, 30, 1)};
    uint64_t total;
    cr_assert_eq(smelt_target_solve(it, 2, 19, &total, &e), SMELT_EUSAGE);
    cr_assert_str_eq(e.msg, "the budget of 19 bytes is below the smallest plan the candidate types allow (20 bytes)");
}

/* Random items: the total never exceeds the budget, and when it stops no single move that fits
 * lowers the cost (what the filling pass guarantees). */
Test(target, solve_fills_the_budget)
{
    smelt_err e;
    uint64_t seed = 7;
    enum { N = 200 };
    static smelt_target_item it[N];
    uint64_t least = 0, most = 0;
    for (size_t i = 0; i < N; i++) {
        it[i].n_cand = 6;
        uint64_t size = 256 + (uint64_t)(unit(&seed) * 100000);
        double scale = unit(&seed) * 10 + 0.1;
        for (size_t k = 0; k < 6; k++) {
            it[i].type[k] = (int)k;
            it[i].bytes[k] = size * (k + 2) / 8;
            it[i].cost[k] = scale * pow(4.0, -(double)k) * (1 + 0.2 * unit(&seed));
        }
        least += it[i].bytes[0];
        most += it[i].bytes[5];
    }
    for (int b = 1; b < 10; b++) {
        uint64_t budget = least + (most - least) * (uint64_t)b / 10, total, sum = 0;
        cr_assert_eq(smelt_target_solve(it, N, budget, &total, &e), 0);
        for (size_t i = 0; i < N; i++) sum += it[i].bytes[it[i].chosen];
        cr_assert_eq(sum, total);
        cr_assert_leq(total, budget);
        cr_assert_geq((double)total, 0.995 * (double)budget, "budget %llu, total %llu", (unsigned long long)budget,
                      (unsigned long long)total);
        for (size_t i = 0; i < N; i++)
            for (size_t k = 0; k < 6; k++)
                if (it[i].cost[k] < it[i].cost[it[i].chosen] && it[i].bytes[k] <= it[i].bytes[it[i].chosen])
                    cr_assert_fail("item %zu: candidate %zu is cheaper and smaller", i, k);
                else if (it[i].cost[k] < it[i].cost[it[i].chosen])
                    cr_assert_gt(it[i].bytes[k] - it[i].bytes[it[i].chosen], budget - total);
    }
}

/* ==== error estimates ==== */

static const smelt_qerr *no_model(void *user, int type)
{
    (void)user;
    (void)type;
    return NULL;
}

Test(target, estimates_fall_with_bits_and_ignore_threads)
{
    enum { COLS = 256, ROWS = 96 };
    static float w[COLS * ROWS], imx[COLS];
    uint64_t seed = 3;
    for (size_t i = 0; i < COLS * ROWS; i++) w[i] = qr_rand(&seed) * (1 + (i % 7 == 0) * 4);
    for (size_t i = 0; i < COLS; i++) imx[i] = 0.1f + (float)unit(&seed);
    smelt_target_source s = {"blk.0.ffn_down.weight", {COLS, ROWS, 1, 1}, SMELT_TYPE_F32, (const uint8_t *)w,
                             COLS * sizeof(float), imx, no_model, NULL};
    const int types[] = {SMELT_TYPE_Q2_K, SMELT_TYPE_Q3_K, SMELT_TYPE_Q4_K, SMELT_TYPE_Q5_K, SMELT_TYPE_Q6_K, SMELT_TYPE_Q8_0};
    double one[6], three[6];
    smelt_err e;
    smelt_pool *pool = smelt_pool_new(3);
    cr_assert_eq(smelt_target_estimate(&s, types, 6, NULL, one, &e), 0);
    cr_assert_eq(smelt_target_estimate(&s, types, 6, pool, three, &e), 0);
    smelt_pool_free(pool);
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(memcmp(&one[k], &three[k], sizeof one[k]), 0, "thread count changed estimate %d", k);
        cr_assert(one[k] > 0 && one[k] < 0.2, "%s: %g", smelt_type_name(types[k]), one[k]);
        if (k) cr_assert_lt(one[k], one[k - 1], "%s %g, before %g", smelt_type_name(types[k]), one[k], one[k - 1]);
    }
    /* rows of 288: the k-quants' blocks of 256 do not fit */
    s.ne[0] = 288;
    s.ne[1] = 64;
    s.src_row_bytes = 288 * sizeof(float);
    s.imatrix = NULL;
    cr_assert_eq(smelt_target_estimate(&s, types, 6, NULL, one, &e), 0);
    cr_assert(isinf(one[0]) && isinf(one[4]));
    cr_assert(isfinite(one[5]) && one[5] > 0);
}

Test(target, sample_covers_a_thirty_second)
{
    cr_assert_eq(smelt_target_sample_step(10), 1);
    cr_assert_eq(smelt_target_sample_step(16), 1);
    cr_assert_eq(smelt_target_sample_step(100), 7);
    cr_assert_eq(smelt_target_sample_step(512), 32);
    cr_assert_eq(smelt_target_sample_step(14336 * 8), 32);
}

/* The slow encoders see fewer rows: about cost / 2 times fewer, at least 16 (the grid
 * types 8, or as asked; all when there are fewer), at most 32768 values beyond those. */
Test(target, slow_types_see_fewer_rows)
{
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_Q4_K, 448, 4096, 0), 1);
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ4_XS, 16, 256, 0), 1);
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ4_XS, 64, 256, 0), 4);
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ4_XS, 448, 4096, 0), 16); /* 28 rows */
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ2_XXS, 3, 256, 0), 1);
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ2_XXS, 64, 256, 0), 8);
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ2_XXS, 1024, 256, 0), 16);  /* 64 rows of 256 */
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ2_XXS, 128, 14336, 0), 16); /* 8 rows */
    cr_assert_eq(smelt_target_type_every(SMELT_TYPE_IQ2_XXS, 64, 256, 4), 16);    /* 4 rows */
}

/* A first look (coarse) estimates a grid type on the middle sampled row alone. */
Test(target, coarse_look_is_the_middle_row)
{
    enum { COLS = 256, ROWS = 96 }; /* 16 sampled rows, every 6th; the middle one is row 48 */
    static float w[COLS * ROWS], imx[COLS];
    uint64_t seed = 5;
    for (size_t i = 0; i < COLS * ROWS; i++) w[i] = qr_rand(&seed);
    for (size_t i = 0; i < COLS; i++) imx[i] = 0.1f + (float)unit(&seed);
    smelt_target_source s = {"blk.0.ffn_up.weight", {COLS, ROWS, 1, 1}, SMELT_TYPE_F32, (const uint8_t *)w,
                             COLS * sizeof(float), imx, no_model, NULL, true, 0};
    const int types[] = {SMELT_TYPE_IQ3_XXS, SMELT_TYPE_Q4_K};
    double coarse[2], full[2], one[2];
    smelt_err e;
    cr_assert_eq(smelt_target_estimate(&s, types, 2, NULL, coarse, &e), 0);
    s.coarse = false;
    cr_assert_eq(smelt_target_estimate(&s, types, 2, NULL, full, &e), 0);
    s.data = (const uint8_t *)(w + 48 * COLS);
    s.ne[1] = 1;
    cr_assert_eq(smelt_target_estimate(&s, types, 2, NULL, one, &e), 0);
    cr_assert_eq(memcmp(&coarse[0], &one[0], sizeof one[0]), 0, "coarse %g, row 48 %g", coarse[0], one[0]);
    cr_assert_eq(memcmp(&coarse[1], &full[1], sizeof full[1]), 0, "the fast type sees every sampled row");
    cr_assert(full[0] > 0 && coarse[0] > 0 && full[0] != coarse[0]);
}

Test(target, classes_by_name)
{
    cr_assert_eq(smelt_target_class_of("token_embd.weight"), SMELT_TC_TOKEN_EMBEDDING);
    cr_assert_eq(smelt_target_class_of("output.weight"), SMELT_TC_OUTPUT);
    cr_assert_eq(smelt_target_class_of("blk.3.attn_q.weight"), SMELT_TC_ATTN_Q);
    cr_assert_eq(smelt_target_class_of("blk.3.attn_qkv.weight"), SMELT_TC_ATTN_V);
    cr_assert_eq(smelt_target_class_of("blk.3.attn_output.weight"), SMELT_TC_ATTN_OUTPUT);
    cr_assert_eq(smelt_target_class_of("blk.10.ffn_down_exps.weight"), SMELT_TC_FFN_DOWN);
    cr_assert_eq(smelt_target_class_of("blk.0.ffn_gate.weight"), SMELT_TC_FFN_GATE);
    cr_assert_eq(smelt_target_class_of("blk.0.ffn_up_shexp.weight"), SMELT_TC_FFN_UP);
    cr_assert_eq(smelt_target_class_of("blk.0.ssm_in.weight"), SMELT_TC_OTHER);
    cr_assert_eq(smelt_target_class_find("attn_output"), SMELT_TC_ATTN_OUTPUT);
    cr_assert_eq(smelt_target_class_find("attn"), -1);
}

/* ==== replayed plans that do not fit the model ==== */

typedef struct got_plan {
    size_t n;
    char names[QR_MAX_TENSORS][64];
    int types[QR_MAX_TENSORS];
    unsigned flags[QR_MAX_TENSORS];
} got_plan;

static void take_plan(void *u, const smelt_qplan *p)
{
    got_plan *g = u;
    g->n = p->n;
    for (size_t i = 0; i < p->n && i < QR_MAX_TENSORS; i++) {
        snprintf(g->names[i], 64, "%s", p->t[i].name);
        g->types[i] = p->t[i].new_type;
        g->flags[i] = p->t[i].flags;
    }
}

static int replay(const char *model, smelt_plan_entry *pe, size_t n, smelt_err *e)
{
    smelt_quantize_opts o;
    smelt_quantize_opts_default(&o);
    o.dry_run = true;
    o.n_threads = 1;
    o.replay = pe;
    o.n_replay = n;
    o.plan_file = "plan.json";
    return smelt_quantize_run(&o, model, NULL, NULL, e);
}

static const char *line_of(const smelt_err *e)
{
    static char line[1500];
    smelt_err_format(e, line, sizeof line);
    return line;
}

Test(target, replay_refuses_plans_that_do_not_fit)
{
    char dir[4096], model[4200], want[6000];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(model, sizeof model, "%s/odd.gguf", dir);
    cr_assert_eq(qr_write_model(model, &qr_shapes[3], QR_META, NULL), 0); /* rows of 2880 and 1000 */
    static got_plan g;
    smelt_quantize_opts o;
    smelt_quantize_opts_default(&o);
    o.dry_run = true;
    o.ftype = "Q8_0";
    o.on_plan = take_plan;
    o.user = &g;
    smelt_err e;
    cr_assert_eq(smelt_quantize_run(&o, model, NULL, NULL, &e), 0, "%s", line_of(&e));
    static smelt_plan_entry pe[QR_MAX_TENSORS];
    for (size_t i = 0; i < g.n; i++) pe[i] = (smelt_plan_entry){g.names[i], g.types[i]};
    cr_assert_eq(replay(model, pe, g.n, &e), 0, "the model's own Q8_0 plan replays: %s", line_of(&e));

    size_t q = 0, kept = 0;
    while (strcmp(g.names[q], "blk.0.attn_q.weight")) q++;
    while (!(g.flags[kept] & SMELT_PT_KEPT)) kept++;
    pe[q].type = SMELT_TYPE_Q4_K;
    cr_assert_eq(replay(model, pe, g.n, &e), SMELT_EMISMATCH);
    cr_assert_str_eq(line_of(&e), "plan.json: 'blk.0.attn_q.weight': q4_K has blocks of 256 values; the tensor's rows have "
                                  "2880 (a multiple is needed)");
    pe[q].type = g.types[q];

    pe[kept].type = SMELT_TYPE_Q8_0;
    cr_assert_eq(replay(model, pe, g.n, &e), SMELT_EMISMATCH);
    snprintf(want, sizeof want, "plan.json: '%s': this tensor is kept as it is (f32) in every plan; the plan gives it q8_0",
             g.names[kept]);
    cr_assert_str_eq(line_of(&e), want);
    pe[kept].type = g.types[kept];

    pe[q].tensor = "blk.99.attn_q.weight";
    cr_assert_eq(replay(model, pe, g.n, &e), SMELT_EMISMATCH);
    snprintf(want, sizeof want, "plan.json: 'blk.99.attn_q.weight': the plan names a tensor that %s does not have", model);
    cr_assert_str_eq(line_of(&e), want);
    pe[q].tensor = g.names[q];

    pe[q] = pe[g.n - 1]; /* blk.0.attn_q.weight missing */
    cr_assert_eq(replay(model, pe, g.n - 1, &e), SMELT_EMISMATCH);
    snprintf(want, sizeof want, "plan.json: 'blk.0.attn_q.weight': the plan has no type for this tensor of %s", model);
    cr_assert_str_eq(line_of(&e), want);
    tu_rmtree(dir);
}
