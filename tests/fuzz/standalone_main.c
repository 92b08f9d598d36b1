// SPDX-License-Identifier: Apache-2.0
/* A main() for the fuzz targets without libFuzzer: runs each file named on the command line through
 * LLVMFuzzerTestOneInput once. For replaying a crash under a debugger or Valgrind (which cannot run the ASan
 * build), or with a compiler that has no -fsanitize=fuzzer:
 *
 *   cc -g -Iinclude -Isrc -Ibuild/generated tests/fuzz/fuzz_sdpa_args.c tests/fuzz/standalone_main.c \
 *      build/libclattn_internal.a -lOpenCL -lclblast -lm -lpthread -o fuzz_sdpa_args_replay
 *   valgrind ./fuzz_sdpa_args_replay tests/fuzz/corpus/fuzz_sdpa_args/valid_plain ...
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Weak, because only some targets define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; ++i) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 2;
        }
        /* Exactly as many bytes as the file holds, so that a read past the end is a read past the allocation. */
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
        if (!data || n < 0 || fread(data, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 2;
        }
        fclose(f);
        fprintf(stderr, "running %s (%ld bytes)\n", argv[i], n);
        LLVMFuzzerTestOneInput(data, (size_t)n);
        free(data);
    }
    return 0;
}
