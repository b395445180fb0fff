/* max_tokens = UINT32_MAX ("no limit") from C, under a 4 GiB address-space
 * limit as on a board: every draft kind must generate until the context is
 * full (or the model ends), never abort on an allocation sized by the token
 * limit. Prints one line per kind and "ALL OK" at the end. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include "edgespec.h"

static bool count(const char *text, size_t len, int32_t token, void *user) {
    (void)text; (void)len; (void)token;
    ++*(int *)user;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct rlimit limit = {4ull << 30, 4ull << 30};
    if (setrlimit(RLIMIT_AS, &limit) != 0) { perror("setrlimit"); return 2; }
    edgespec_model *model = NULL;
    if (edgespec_model_load(argv[1], NULL, &model) != EDGESPEC_OK) {
        printf("FAIL load: %s\n", edgespec_last_error());
        return 1;
    }
    const int kinds[] = {EDGESPEC_DRAFT_NONE, EDGESPEC_DRAFT_LOOKUP, EDGESPEC_DRAFT_MODEL,
                         EDGESPEC_DRAFT_HYBRID, EDGESPEC_DRAFT_EAD, EDGESPEC_DRAFT_EAD_SPEC};
    int failures = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        edgespec_session_params p = edgespec_session_params_default();
        p.n_ctx = 64;
        p.n_threads = 1;
        p.draft_kind = kinds[i];
        p.gamma = 3;
        edgespec_session *session = NULL;
        edgespec_stats stats = edgespec_stats_init();
        int tokens = 0;
        const edgespec_model *drafter = kinds[i] == EDGESPEC_DRAFT_NONE || kinds[i] == EDGESPEC_DRAFT_LOOKUP ? NULL : model;
        edgespec_result rc = edgespec_session_new(model, drafter, &p, &session);
        if (rc == EDGESPEC_OK)
            rc = edgespec_session_generate(session, "kalo mine", 0, UINT32_MAX, count, &tokens, &stats);
        int ok = rc == EDGESPEC_OK && (stats.stop_reason == EDGESPEC_STOP_CONTEXT_FULL || stats.stop_reason == EDGESPEC_STOP_EOG);
        printf("%s kind %d: rc %d, %u tokens, stop %d (%s)\n", ok ? "ok" : "FAIL", kinds[i], (int)rc,
               rc == EDGESPEC_OK ? stats.generated_tokens : 0, rc == EDGESPEC_OK ? stats.stop_reason : -1, edgespec_last_error());
        if (!ok) failures++;
        edgespec_session_free(&session);
    }
    edgespec_model_free(&model);
    if (failures == 0) printf("ALL OK\n");
    return failures != 0;
}
