/* mixtral_layer.c — see mixtral_layer.h. */
#include "mixtral_layer.h"

#include "formats/imatrix.h"

#define ML_EMBD 4096
#define ML_FF 14336

qr_shape ml_shape(uint32_t n_exp)
{
    qr_shape s = {"mixtral-layer", 1, ML_EMBD, ML_FF, 32, 8, n_exp, 512, false, false};
    return s;
}

int ml_write_experts(const char *path, uint32_t n_exp, smelt_err *e)
{
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (!w) return SMELT_ERR(e, SMELT_ENOMEM, path, NULL, "out of memory");
    int rc = smelt_gguf_writer_set_str(w, "general.architecture", "llama", e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.block_count", 1, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.context_length", 4096, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.embedding_length", ML_EMBD, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.feed_forward_length", ML_FF, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.attention.head_count", 32, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 8, e);
    rc |= smelt_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.expert_count", 8, e);
    rc |= smelt_gguf_writer_set_u32(w, "llama.expert_used_count", 2, e);
    uint64_t up[3] = {ML_EMBD, ML_FF, n_exp}, down[3] = {ML_FF, ML_EMBD, n_exp};
    uint32_t nd = n_exp > 1 ? 3 : 2;
    rc |= smelt_gguf_writer_add_tensor(w, "blk.0.ffn_up_exps.weight", nd, up, SMELT_TYPE_F16, e);
    rc |= smelt_gguf_writer_add_tensor(w, "blk.0.ffn_down_exps.weight", nd, down, SMELT_TYPE_F16, e);
    if (!rc) rc = smelt_gguf_writer_begin(w, path, e);
    size_t row = ML_FF, n = 2 * (size_t)ML_EMBD * ML_FF * n_exp / row;
    uint16_t *buf = rc ? NULL : malloc(row * 2);
    if (!rc && !buf) rc = SMELT_ERR(e, SMELT_ENOMEM, path, NULL, "out of memory");
    uint64_t seed = 12345;
    for (size_t r = 0; !rc && r < n; r++) {
        for (size_t i = 0; i < row; i++) buf[i] = smelt_f32_to_f16(qr_rand(&seed));
        rc = smelt_gguf_writer_write(w, buf, row * 2, e);
    }
    free(buf);
    if (!rc) rc = smelt_gguf_writer_commit(w, e);
    smelt_gguf_writer_free(w);
    return rc;
}

int ml_write_model(const char *path, uint32_t n_exp, smelt_err *e)
{
    qr_shape s = ml_shape(n_exp);
    if (qr_write_model(path, &s, QR_DATA, QR_SMALL_VOCAB))
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "could not write the synthetic layer");
    return 0;
}

/* A 64-bit hash of a string (FNV-1a): one seed per input vector the matrices see. */
static uint64_t ml_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h | 1; /* xorshift needs a nonzero state */
}

/* Mean squared activation of each of n columns, a made-up profile (NOT a statistic of
 * real activations): exp of a few random low-frequency sines (smooth, positive, a spread
 * of about 10× between columns), a 10% per-column jitter, and one column in 512 an
 * outlier channel 30× larger (as LLM hidden states have). The same seed gives the same
 * profile, so matrices that share an input (attn_q/k/v; the router, gate and up experts)
 * share it, as in a real imatrix. */
static void ml_profile(float *a, uint64_t n, uint64_t seed)
{
    double amp[6], ph[6];
    for (int k = 0; k < 6; k++) {
        amp[k] = 0.6 * (qr_rand(&seed) / 0.035 + 1.0) / (k + 1); /* qr_rand is in ±0.035 */
        ph[k] = 3.14159265358979 * (qr_rand(&seed) / 0.035 + 1.0);
    }
    for (uint64_t c = 0; c < n; c++) {
        double x = 0;
        for (int k = 0; k < 6; k++) x += amp[k] * sin(6.28318530717959 * (k + 1) * (double)c / (double)n + ph[k]);
        double jitter = 1.0 + 0.1 * (qr_rand(&seed) / 0.035);
        a[c] = (float)(0.05 * exp(x) * jitter * (c % 512 == 97 ? 30.0 : 1.0));
    }
}

int ml_write_imatrix(const char *path, uint32_t n_exp, smelt_err *e)
{
    /* 100 chunks of 512 tokens; each token reaches min(2, n_exp) experts */
    const uint32_t chunks = 100, chunk_size = 512;
    const int64_t tokens = (int64_t)chunks * chunk_size;
    qr_shape s = ml_shape(n_exp);
    static qr_tensor t[QR_MAX_TENSORS];
    size_t nt = qr_shape_tensors(&s, t);
    smelt_imx *m = smelt_imx_new();
    if (!m) return SMELT_ERR(e, SMELT_ENOMEM, path, NULL, "out of memory");
    m->chunk_count = chunks;
    m->chunk_size = chunk_size;
    int rc = smelt_imx_add_dataset(m, "synthetic (mixtral_layer.c; not calibration text)", e);
    /* per-expert token counts: 2 x tokens split unevenly (router imbalance), fixed seed */
    int64_t ecount[8] = {tokens};
    if (n_exp > 1) {
        uint64_t seed = 7;
        double w[8], sw = 0;
        for (uint32_t j = 0; j < n_exp; j++) sw += w[j] = 1.0 + qr_rand(&seed) / 0.035 * 0.6;
        int64_t left = 2 * tokens;
        for (uint32_t j = 0; j < n_exp; j++) left -= ecount[j] = j + 1 < n_exp ? (int64_t)(2.0 * tokens * w[j] / sw) : left;
        if (n_exp == 2) ecount[0] = ecount[1] = tokens; /* two of two: every token in both */
    }
    for (size_t i = 0; !rc && i < nt; i++) {
        const char *nm = t[i].name;
        if (t[i].ne[1] == 1 || !strcmp(nm, "token_embd.weight")) continue; /* norms; a row lookup */
        const char *input = strstr(nm, "attn_q.") || strstr(nm, "attn_k.") || strstr(nm, "attn_v.") ? "attn-in"
                            : strstr(nm, "ffn_gate") || strstr(nm, "ffn_up") ? "ffn-in" : nm;
        uint64_t cols = t[i].ne[0], mats = t[i].ne[2];
        float *sums = malloc(cols * mats * sizeof *sums), *a = malloc(cols * sizeof *a);
        int64_t *counts = malloc(mats * sizeof *counts);
        if (!sums || !a || !counts) rc = SMELT_ERR(e, SMELT_ENOMEM, path, nm, "out of memory");
        for (uint64_t j = 0; !rc && j < mats; j++) {
            counts[j] = strstr(nm, "_exps") ? ecount[j] : tokens;
            /* the down experts see each expert's own hidden state, the others a shared input */
            ml_profile(a, cols, ml_hash(input) ^ (strstr(nm, "ffn_down") ? (j + 1) << 20 : 0));
            for (uint64_t c = 0; c < cols; c++) sums[j * cols + c] = a[c] * (float)counts[j];
        }
        if (!rc) rc = smelt_imx_add(m, nm, cols * mats, mats, sums, counts, e);
        free(sums);
        free(a);
        free(counts);
    }
    if (!rc) rc = smelt_imx_write(m, path, SMELT_IMX_GGUF, e);
    smelt_imx_free(m);
    return rc;
}
