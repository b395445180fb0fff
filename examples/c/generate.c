/* edgespec C example: load a model, generate greedily with speculative
 * decoding (prompt lookup, or a drafter model given as the third argument),
 * stream the text to stdout and print the statistics to stderr.
 *
 *   generate MODEL.gguf "PROMPT" [DRAFTER.gguf] [MAX_TOKENS]
 */
#include <stdio.h>
#include <stdlib.h>

#include "edgespec.h"

static bool print_piece(const char *text, size_t len, int32_t token, void *user_data) {
    (void)token;
    size_t *count = (size_t *)user_data;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    *count += 1;
    return true; /* keep going */
}

static int fail(const char *what, edgespec_result rc) {
    fprintf(stderr, "%s failed (%d): %s\n", what, (int)rc, edgespec_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [DRAFTER.gguf] [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *drafter_path = argc > 3 && argv[3][0] != '\0' ? argv[3] : NULL;
    uint32_t max_tokens = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 10) : 64;

    edgespec_model *target = NULL, *drafter = NULL;
    edgespec_result rc = edgespec_model_load(argv[1], NULL, &target);
    if (rc != EDGESPEC_OK) return fail("edgespec_model_load", rc);
    if (drafter_path) {
        rc = edgespec_model_load(drafter_path, NULL, &drafter);
        if (rc != EDGESPEC_OK) {
            edgespec_model_free(&target);
            return fail("edgespec_model_load (drafter)", rc);
        }
    }

    edgespec_session_params params = edgespec_session_params_default();
    params.n_ctx = 2048;
    params.n_threads = 2;
    params.draft_kind = drafter ? EDGESPEC_DRAFT_HYBRID : EDGESPEC_DRAFT_LOOKUP;
    params.gamma = 4;

    edgespec_session *session = NULL;
    rc = edgespec_session_new(target, drafter, &params, &session);
    /* The session keeps the models alive: the handles can go now. */
    edgespec_model_free(&target);
    edgespec_model_free(&drafter);
    if (rc != EDGESPEC_OK) return fail("edgespec_session_new", rc);

    size_t pieces = 0;
    edgespec_stats stats = edgespec_stats_init();
    rc = edgespec_session_generate(session, argv[2], true, max_tokens, print_piece, &pieces, &stats);
    if (rc != EDGESPEC_OK) {
        edgespec_session_free(&session);
        return fail("edgespec_session_generate", rc);
    }
    printf("\n");
    fprintf(stderr,
            "edgespec %s: %u prompt tokens, %u generated (%zu callbacks), %.1f tok/s decode, "
            "drafted %u, accepted %u, alpha %.3f, tau %.2f, MBSU %.2f, drafter share %.2f, stop %d\n",
            edgespec_version(), stats.prompt_tokens, stats.generated_tokens, pieces, stats.decode_tok_s,
            stats.drafted, stats.accepted, stats.acceptance, stats.tau, stats.mbsu, stats.drafter_share,
            stats.stop_reason);
    edgespec_session_free(&session);
    return 0;
}
