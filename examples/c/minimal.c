/* The smallest edgespec program: greedy generation, text to stdout. */
#include <stdio.h>
#include "edgespec.h"

static bool on_text(const char *text, size_t len, int32_t token, void *user_data) {
    (void)token; (void)user_data;
    fwrite(text, 1, len, stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    edgespec_model *model = NULL;
    edgespec_session *session = NULL;
    if (edgespec_model_load(argv[1], NULL, &model) != EDGESPEC_OK ||
        edgespec_session_new(model, NULL, NULL, &session) != EDGESPEC_OK ||
        edgespec_session_generate(session, argv[2], true, 64, on_text, NULL, NULL) != EDGESPEC_OK) {
        fprintf(stderr, "error: %s\n", edgespec_last_error());
    }
    printf("\n");
    edgespec_session_free(&session);
    edgespec_model_free(&model);
    return 0;
}
