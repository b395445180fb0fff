/* Bad input from C: every call must return an error code with a message,
 * never crash. Prints one line per check and "ALL OK" at the end. */
#include <stdio.h>
#include <string.h>
#include "edgespec.h"

static int failures = 0;

static void expect(const char *what, edgespec_result got, edgespec_result want) {
    const char *msg = edgespec_last_error();
    int ok = got == want && (want == EDGESPEC_OK || (msg && strlen(msg) > 0));
    printf("%s %s: got %d want %d (%s)\n", ok ? "ok" : "FAIL", what, (int)got, (int)want, msg);
    if (!ok) failures++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    edgespec_model *model = NULL;
    edgespec_session *session = NULL;

    expect("load NULL path", edgespec_model_load(NULL, NULL, &model), EDGESPEC_ERR_NULL_ARGUMENT);
    expect("load NULL out", edgespec_model_load(argv[1], NULL, NULL), EDGESPEC_ERR_NULL_ARGUMENT);
    expect("load missing file", edgespec_model_load("/no/such/model.gguf", NULL, &model), EDGESPEC_ERR_MODEL_NOT_FOUND);
    expect("load invalid UTF-8 path", edgespec_model_load("\xff\xfe.gguf", NULL, &model), EDGESPEC_ERR_INVALID_UTF8);
    if (argc > 2)
        expect("load malformed GGUF", edgespec_model_load(argv[2], NULL, &model), EDGESPEC_ERR_INVALID_MODEL);
    edgespec_model_params mp = edgespec_model_params_default();
    mp.gpu_layers = -5;
    expect("load negative gpu_layers", edgespec_model_load(argv[1], &mp, &model), EDGESPEC_ERR_INVALID_PARAMETER);
    if (model != NULL) { printf("FAIL out written on failure\n"); failures++; }

    expect("load model", edgespec_model_load(argv[1], NULL, &model), EDGESPEC_OK);

    edgespec_session_params p = edgespec_session_params_default();
    p.n_threads = -3;
    expect("negative threads", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_INVALID_PARAMETER);
    p = edgespec_session_params_default();
    p.gamma = 1000000;
    p.draft_kind = EDGESPEC_DRAFT_LOOKUP;
    expect("gamma 10^6", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_INVALID_PARAMETER);
    p = edgespec_session_params_default();
    p.n_ctx = 0;
    expect("context size 0", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_INVALID_PARAMETER);
    p = edgespec_session_params_default();
    p.draft_kind = 42;
    expect("unknown draft kind", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_INVALID_PARAMETER);
    p = edgespec_session_params_default();
    p.draft_kind = EDGESPEC_DRAFT_MODEL;
    expect("model drafter without model", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_MISSING_DRAFTER);
    p = edgespec_session_params_default();
    p.temperature = -1.0f;
    expect("negative temperature", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_ERR_INVALID_PARAMETER);
    expect("session NULL target", edgespec_session_new(NULL, NULL, NULL, &session), EDGESPEC_ERR_NULL_ARGUMENT);
    if (session != NULL) { printf("FAIL out written on failure\n"); failures++; }

    p = edgespec_session_params_default();
    p.n_ctx = 64;
    p.n_threads = 2;
    expect("new session", edgespec_session_new(model, NULL, &p, &session), EDGESPEC_OK);
    expect("generate NULL session", edgespec_session_generate(NULL, "hi", false, 4, NULL, NULL, NULL), EDGESPEC_ERR_NULL_ARGUMENT);
    expect("generate NULL prompt", edgespec_session_generate(session, NULL, false, 4, NULL, NULL, NULL), EDGESPEC_ERR_NULL_ARGUMENT);
    expect("generate empty prompt", edgespec_session_generate(session, "", false, 4, NULL, NULL, NULL), EDGESPEC_ERR_INVALID_PARAMETER);
    expect("generate invalid UTF-8", edgespec_session_generate(session, "\xc3\x28", false, 4, NULL, NULL, NULL), EDGESPEC_ERR_INVALID_UTF8);
    expect("generate max_tokens 0", edgespec_session_generate(session, "hi", false, 0, NULL, NULL, NULL), EDGESPEC_ERR_INVALID_PARAMETER);
    int32_t bad_tokens[2] = {1, 99999999};
    expect("token id out of range", edgespec_session_generate_tokens(session, bad_tokens, 2, 4, NULL, NULL, NULL), EDGESPEC_ERR_INVALID_PARAMETER);
    expect("tokens NULL", edgespec_session_generate_tokens(session, NULL, 2, 4, NULL, NULL, NULL), EDGESPEC_ERR_NULL_ARGUMENT);
    char long_prompt[4096];
    for (int i = 0; i < 4095; i++) long_prompt[i] = (i % 7 == 6) ? ' ' : 'a' + (i % 26);
    long_prompt[4095] = '\0';
    expect("prompt over the context", edgespec_session_generate(session, long_prompt, false, 4, NULL, NULL, NULL), EDGESPEC_ERR_CONTEXT_FULL);
    expect("generate works after errors", edgespec_session_generate(session, "hello", false, 4, NULL, NULL, NULL), EDGESPEC_OK);
    expect("reset NULL", edgespec_session_reset(NULL), EDGESPEC_ERR_NULL_ARGUMENT);

    /* The T** pattern: freeing twice is a no-op, as is freeing NULL. */
    edgespec_session_free(&session);
    edgespec_session_free(&session);
    edgespec_session_free(NULL);
    edgespec_model_free(&model);
    edgespec_model_free(&model);
    edgespec_model_free(NULL);
    if (session != NULL || model != NULL) { printf("FAIL free did not clear the pointer\n"); failures++; }
    if (edgespec_model_n_vocab(NULL) != -1) { printf("FAIL n_vocab(NULL)\n"); failures++; }

    if (failures == 0) printf("ALL OK\n");
    return failures == 0 ? 0 : 1;
}
