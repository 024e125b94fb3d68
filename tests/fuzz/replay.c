/* replay.c — run a fuzz target over stored inputs without libFuzzer (gcc + ASan in
 * `make check`), so every corpus file and every past crasher stays a regression test.
 * Usage: fuzz_X-replay FILE_OR_DIR... ; prints the number of inputs replayed. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    size_t got = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!b || got != (size_t)n) {
        free(b);
        return -1;
    }
    /* exact-size copy so ASan catches reads one past the end */
    uint8_t *exact = malloc((size_t)n ? (size_t)n : 1);
    memcpy(exact, b, (size_t)n);
    free(b);
    LLVMFuzzerTestOneInput(exact, (size_t)n);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *de;
            while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
                if (replay_file(p)) bad++;
                else count++;
            }
            if (d) closedir(d);
        } else {
            if (replay_file(argv[i])) bad++;
            else count++;
        }
    }
    printf("replayed %d inputs\n", count);
    return bad ? 1 : 0;
}
