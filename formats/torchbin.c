/* torchbin.c — placeholder until the torch zip reader lands: refuses .bin checkpoints
 * with a clear message. */
#include "torchbin.h"

#include <string.h>

int smelt_torchbin_open_dir(const char *dir, smelt_tsrc *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    return SMELT_ERR(e, SMELT_EUNSUPPORTED, dir, NULL,
                     "no model.safetensors here, and PyTorch .bin checkpoints are not supported yet");
}

int smelt_torchbin_open_file(const char *path, smelt_tsrc *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, NULL, "PyTorch .bin files are not supported yet");
}
