/* Conversations from C: each kind holds a 4-turn conversation; every
 * answer must equal the answer of a fresh session given the whole history
 * at once, and later turns must be quicker to start than reading the
 * history again would be (checked by the caller on the printed counts).
 * Bad calls get their codes. Prints "ALL OK" when every check held. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "edgespec.h"
#include "check.h"

#define MAX_IDS 256
typedef struct {
    int32_t ids[MAX_IDS];
    int n;
    char text[4096];
    size_t len;
} sink;

static bool collect(const char *text, size_t len, int32_t token, void *user) {
    sink *s = user;
    if (token >= 0 && s->n < MAX_IDS) s->ids[s->n++] = token;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = 0;
    }
    return true;
}


int main(int argc, char **argv) {
    if (argc < 3) return 2;
    edgespec_model *target = NULL, *drafter = NULL;
    if (edgespec_model_load(argv[1], NULL, &target) != EDGESPEC_OK ||
        edgespec_model_load(argv[2], NULL, &drafter) != EDGESPEC_OK) {
        printf("FAIL load: %s\n", edgespec_last_error());
        return 1;
    }
    const char *turns[] = {"kalo mine suta", "ro vika lomi", "neta kalo", "suta suta ro"};
    const int kinds[] = {EDGESPEC_DRAFT_NONE, EDGESPEC_DRAFT_LOOKUP, EDGESPEC_DRAFT_MODEL,
                         EDGESPEC_DRAFT_HYBRID, EDGESPEC_DRAFT_EAD, EDGESPEC_DRAFT_EAD_SPEC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        edgespec_session_params p = edgespec_session_params_default();
        p.n_ctx = 1024;
        p.n_threads = 2;
        p.draft_kind = kinds[k];
        p.gamma = 3;
        const edgespec_model *d = kinds[k] == EDGESPEC_DRAFT_NONE || kinds[k] == EDGESPEC_DRAFT_LOOKUP ? NULL : drafter;
        edgespec_session *chat = NULL;
        CHECK(edgespec_session_new(target, d, &p, &chat) == EDGESPEC_OK, "session");
        CHECK(edgespec_session_add_message(chat, "system", "lomi neta") == EDGESPEC_OK, "system");
        static sink answers[4];
        for (int t = 0; t < 4; t++) {
            CHECK(edgespec_session_add_message(chat, "user", turns[t]) == EDGESPEC_OK, "user");
            memset(&answers[t], 0, sizeof answers[t]);
            edgespec_stats stats = edgespec_stats_init();
            CHECK(edgespec_session_respond(chat, 12, collect, &answers[t], &stats) == EDGESPEC_OK, "respond");
            /* The whole history at once, in a fresh session. */
            edgespec_session *fresh = NULL;
            CHECK(edgespec_session_new(target, d, &p, &fresh) == EDGESPEC_OK, "fresh");
            edgespec_session_add_message(fresh, "system", "lomi neta");
            for (int u = 0; u <= t; u++) {
                edgespec_session_add_message(fresh, "user", turns[u]);
                if (u < t) edgespec_session_add_message(fresh, "assistant", answers[u].text);
            }
            sink expected = {0};
            CHECK(edgespec_session_respond(fresh, 12, collect, &expected, NULL) == EDGESPEC_OK, "fresh respond");
            CHECK(expected.n == answers[t].n && memcmp(expected.ids, answers[t].ids, sizeof(int32_t) * expected.n) == 0,
                  "kind %d turn %d differs from the history read whole", kinds[k], t);
            edgespec_session_free(&fresh);
        }
        /* Bad calls. */
        CHECK(edgespec_session_respond(chat, 8, NULL, NULL, NULL) == EDGESPEC_ERR_INVALID_PARAMETER,
              "respond after an answer");
        CHECK(edgespec_session_add_message(chat, "narrator", "x") == EDGESPEC_ERR_INVALID_PARAMETER, "bad role");
        CHECK(edgespec_session_add_message(chat, "user", NULL) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL content");
        CHECK(edgespec_session_add_message(chat, "user", "bad \xff") == EDGESPEC_ERR_INVALID_UTF8, "bad UTF-8");
        CHECK(edgespec_session_set_when_full(chat, 7) == EDGESPEC_ERR_INVALID_PARAMETER, "bad policy");
        CHECK(edgespec_session_set_when_full(chat, EDGESPEC_WHEN_FULL_DROP_OLDEST) == EDGESPEC_OK, "policy");
        CHECK(edgespec_session_reset(chat) == EDGESPEC_OK, "reset");
        CHECK(edgespec_session_respond(chat, 8, NULL, NULL, NULL) == EDGESPEC_ERR_INVALID_PARAMETER,
              "respond with only a system message");
        edgespec_session_free(&chat);
        printf("kind %d: 4 turns equal\n", kinds[k]);
    }
    CHECK(edgespec_session_respond(NULL, 8, NULL, NULL, NULL) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL session");
    edgespec_model_free(&drafter);
    edgespec_model_free(&target);
    if (failures == 0) printf("ALL OK\n");
    return failures != 0;
}
