/* Prompt caches from C: a session saves its system prompt's caches, a new
 * session restores them and answers exactly as a session that read the
 * whole history; files that are not prompt caches, missing files and bad
 * arguments get their codes and leave a working session. argv[3] is a
 * folder to write in. Prints "ALL OK" when every check held. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "edgespec.h"
#include "check.h"

#define MAX_IDS 64
typedef struct {
    int32_t ids[MAX_IDS];
    int n;
} sink;

static bool collect(const char *text, size_t len, int32_t token, void *user) {
    (void)text;
    (void)len;
    sink *s = user;
    if (token >= 0 && s->n < MAX_IDS) s->ids[s->n++] = token;
    return true;
}

static bool same(const sink *a, const sink *b) {
    return a->n == b->n && memcmp(a->ids, b->ids, sizeof(int32_t) * a->n) == 0;
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    edgespec_model *target = NULL, *drafter = NULL;
    if (edgespec_model_load(argv[1], NULL, &target) != EDGESPEC_OK ||
        edgespec_model_load(argv[2], NULL, &drafter) != EDGESPEC_OK) {
        printf("FAIL load: %s\n", edgespec_last_error());
        return 1;
    }
    char system[2048] = "";
    for (int i = 0; i < 6; i++) strcat(system, "kalo mine suta ro vika lomi neta ");
    char path[1024], notes[1024];
    snprintf(path, sizeof path, "%s/system.cache", argv[3]);
    snprintf(notes, sizeof notes, "%s/notes.txt", argv[3]);
    FILE *f = fopen(notes, "w");
    fputs("my notes", f);
    fclose(f);

    const int kinds[] = {EDGESPEC_DRAFT_NONE, EDGESPEC_DRAFT_LOOKUP, EDGESPEC_DRAFT_HYBRID, EDGESPEC_DRAFT_EAD_SPEC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        edgespec_session_params p = edgespec_session_params_default();
        p.n_ctx = 1024;
        p.n_threads = 2;
        p.draft_kind = kinds[k];
        p.gamma = 3;
        const edgespec_model *d = kinds[k] == EDGESPEC_DRAFT_NONE || kinds[k] == EDGESPEC_DRAFT_LOOKUP ? NULL : drafter;

        edgespec_session *saver = NULL;
        CHECK(edgespec_session_new(target, d, &p, &saver) == EDGESPEC_OK, "session");
        uint32_t saved = 0;
        CHECK(edgespec_session_save_cache(saver, path, &saved) == EDGESPEC_ERR_INVALID_PARAMETER,
              "saving an empty conversation");
        edgespec_session_add_message(saver, "system", system);
        CHECK(edgespec_session_save_cache(saver, path, &saved) == EDGESPEC_OK && saved > 50, "save (%u)", saved);
        CHECK(edgespec_session_save_cache(saver, notes, NULL) == EDGESPEC_ERR_PROMPT_CACHE,
              "saving over a file that is no prompt cache");
        CHECK(edgespec_session_save_cache(saver, NULL, NULL) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL path");
        edgespec_session_free(&saver);

        /* The whole history read by a fresh session. */
        edgespec_session *fresh = NULL;
        CHECK(edgespec_session_new(target, d, &p, &fresh) == EDGESPEC_OK, "fresh");
        edgespec_session_add_message(fresh, "system", system);
        edgespec_session_add_message(fresh, "user", "suta ro kalo");
        sink expected = {0};
        CHECK(edgespec_session_respond(fresh, 12, collect, &expected, NULL) == EDGESPEC_OK, "fresh respond");
        edgespec_session_free(&fresh);

        edgespec_session *restored = NULL;
        CHECK(edgespec_session_new(target, d, &p, &restored) == EDGESPEC_OK, "restored");
        uint32_t n = 0;
        CHECK(edgespec_session_load_cache(restored, notes, &n) == EDGESPEC_ERR_PROMPT_CACHE, "a file that is no cache");
        CHECK(edgespec_session_load_cache(restored, "/nonexistent/x.cache", &n) == EDGESPEC_ERR_IO, "a missing file");
        CHECK(edgespec_session_load_cache(restored, NULL, &n) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL path");
        CHECK(edgespec_session_load_cache(restored, path, &n) == EDGESPEC_OK && n == saved, "load (%u of %u)", n, saved);
        edgespec_session_add_message(restored, "system", system);
        edgespec_session_add_message(restored, "user", "suta ro kalo");
        sink answer = {0};
        CHECK(edgespec_session_respond(restored, 12, collect, &answer, NULL) == EDGESPEC_OK, "restored respond");
        CHECK(same(&answer, &expected), "kind %d: the restored answer differs", kinds[k]);
        edgespec_session_free(&restored);
        printf("kind %d: restored %u tokens, same answer\n", kinds[k], n);
    }
    /* The lookup memory of earlier outputs: saved after answers, loaded by
     * a new session (which then drafts its repeat of an answer from it and
     * answers the same), refused where it is not a memory or the session
     * keeps none; the notes file is never written over. */
    char memory[1024];
    snprintf(memory, sizeof memory, "%s/outputs.memory", argv[3]);
    edgespec_session_params lp = edgespec_session_params_default();
    lp.n_ctx = 1024;
    lp.n_threads = 2;
    lp.draft_kind = EDGESPEC_DRAFT_LOOKUP;
    edgespec_session *first = NULL, *second = NULL, *plain = NULL;
    CHECK(edgespec_session_new(target, NULL, &lp, &first) == EDGESPEC_OK, "lookup session");
    sink said = {0};
    edgespec_session_add_message(first, "user", "suta ro kalo vika");
    CHECK(edgespec_session_respond(first, 24, collect, &said, NULL) == EDGESPEC_OK, "first answer");
    CHECK(edgespec_session_save_lookup_memory(first, memory) == EDGESPEC_OK, "save memory: %s", edgespec_last_error());
    CHECK(edgespec_session_save_lookup_memory(first, notes) == EDGESPEC_ERR_LOOKUP_MEMORY,
          "saving a memory over a file that is no memory");
    CHECK(edgespec_session_save_lookup_memory(first, NULL) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL memory path");
    edgespec_session_free(&first);
    CHECK(edgespec_session_new(target, NULL, &lp, &second) == EDGESPEC_OK, "second lookup session");
    CHECK(edgespec_session_load_lookup_memory(second, notes) == EDGESPEC_ERR_LOOKUP_MEMORY, "a file that is no memory");
    CHECK(edgespec_session_load_lookup_memory(second, "/nonexistent/x.memory") == EDGESPEC_ERR_IO, "a missing memory");
    CHECK(edgespec_session_load_lookup_memory(second, memory) == EDGESPEC_OK, "load memory: %s", edgespec_last_error());
    sink again = {0};
    edgespec_session_add_message(second, "user", "suta ro kalo vika");
    edgespec_stats st = edgespec_stats_init();
    CHECK(edgespec_session_respond(second, 24, collect, &again, &st) == EDGESPEC_OK, "second answer");
    CHECK(same(&again, &said), "the answer drafted from memory differs");
    CHECK(st.accepted > 0, "nothing drafted from the loaded memory was accepted");
    edgespec_session_free(&second);
    CHECK(edgespec_session_new(target, NULL, NULL, &plain) == EDGESPEC_OK, "plain session");
    CHECK(edgespec_session_save_lookup_memory(plain, memory) == EDGESPEC_ERR_LOOKUP_MEMORY, "a session without memory");
    CHECK(edgespec_session_load_lookup_memory(plain, memory) == EDGESPEC_ERR_LOOKUP_MEMORY, "loading without memory");
    edgespec_session_free(&plain);

    f = fopen(notes, "r");
    char buf[32] = "";
    fgets(buf, sizeof buf, f);
    fclose(f);
    CHECK(strcmp(buf, "my notes") == 0, "the notes file was changed");
    CHECK(edgespec_session_load_cache(NULL, path, NULL) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL session");
    edgespec_model_free(&drafter);
    edgespec_model_free(&target);
    if (failures == 0) printf("ALL OK\n");
    return failures != 0;
}
