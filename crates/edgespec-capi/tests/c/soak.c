/* Soak: one process, one model pair, many generations through the C API.
 *
 *   soak TARGET DRAFTER GENERATIONS MAX_TOKENS
 *
 * Cycles through every draft kind (EAD's included), greedy and sampled
 * settings, cancellations from the callback and deliberate errors (bad
 * parameters, NULL and invalid UTF-8 prompts, a prompt over the context, a
 * missing drafter) between the generations, and recreates the session every
 * few calls (and resets it now and then). Checks that
 *   - every call meant to succeed succeeds, every deliberate error fails
 *     with its code, and the call after an error succeeds;
 *   - greedy lookup, model and hybrid drafting give the target's own
 *     output (fresh sessions);
 *   - every greedy generation with a fixed draft length equals, token for token, the same kind's
 *     generation on the same prompt in a fresh session, and a cancelled
 *     one is a prefix of it: no state leaks from one call into the next;
 *   - resident memory after the warm-up (the first tenth) grows by less
 *     than 16 MiB up to the end.
 * MAX_TOKENS up to 32 keeps EAD clear of its timing-based fallback, which
 * only judges a request after 32 tokens. Prints the figures and "ALL OK" when every check held. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "edgespec.h"
#include "check.h"

#define MAX_TEXT 8192

#define MAX_IDS 1024

typedef struct {
    char text[MAX_TEXT];
    size_t len;
    int32_t ids[MAX_IDS];
    int tokens;
    int cancel_after; /* 0: never */
} sink;

static bool collect(const char *text, size_t len, int32_t token, void *user) {
    sink *s = user;
    if (s->len + len < MAX_TEXT) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = 0;
    }
    if (token >= 0 && s->tokens < MAX_IDS) s->ids[s->tokens] = token;
    if (token >= 0) s->tokens++;
    return s->cancel_after == 0 || s->tokens < s->cancel_after;
}

static long resident_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static const char *PROMPTS[] = {
    "kalo mine suta", "def add(a, b):", "Name three primary colours.",
    "The quick brown fox", "1, 2, 3, 4,", "vika lomi neta ro",
};
#define N_PROMPTS (sizeof PROMPTS / sizeof PROMPTS[0])
static const int KINDS[] = {EDGESPEC_DRAFT_NONE, EDGESPEC_DRAFT_LOOKUP, EDGESPEC_DRAFT_MODEL,
                            EDGESPEC_DRAFT_HYBRID, EDGESPEC_DRAFT_EAD, EDGESPEC_DRAFT_EAD_SPEC};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

/* Session parameters: greedy with a fixed draft length unless `sampled` or `automatic`. */
static edgespec_session_params params_for(int kind, bool sampled, bool automatic, uint64_t seed) {
    edgespec_session_params p = edgespec_session_params_default();
    p.n_ctx = 512;
    p.n_threads = 2;
    p.draft_kind = kind;
    p.gamma = automatic ? -1 : 3;
    if (sampled) {
        p.temperature = 0.8f;
        p.top_k = 40;
        p.top_p = 0.95f;
        p.seed = seed;
    }
    return p;
}

static const edgespec_model *drafter_for(int kind, const edgespec_model *drafter) {
    return kind == EDGESPEC_DRAFT_NONE || kind == EDGESPEC_DRAFT_LOOKUP ? NULL : drafter;
}


/* One deliberate error, by number; returns its result code. */
static edgespec_result deliberate_error(int which, const edgespec_model *target,
                                        edgespec_session *session, edgespec_result *expected) {
    edgespec_session_params p = edgespec_session_params_default();
    edgespec_session *bad = NULL;
    sink s = {0};
    char long_prompt[4096];
    switch (which % 5) {
    case 0:
        p.gamma = -7;
        *expected = EDGESPEC_ERR_INVALID_PARAMETER;
        return edgespec_session_new(target, NULL, &p, &bad);
    case 1:
        *expected = EDGESPEC_ERR_NULL_ARGUMENT;
        return edgespec_session_generate(session, NULL, false, 8, collect, &s, NULL);
    case 2:
        *expected = EDGESPEC_ERR_INVALID_UTF8;
        return edgespec_session_generate(session, "bad \xff\xfe utf-8", false, 8, collect, &s, NULL);
    case 3:
        for (size_t i = 0; i + 1 < sizeof long_prompt; i++) long_prompt[i] = i % 5 == 4 ? ' ' : 'a' + i % 7;
        long_prompt[sizeof long_prompt - 1] = 0;
        *expected = EDGESPEC_ERR_CONTEXT_FULL;
        return edgespec_session_generate(session, long_prompt, false, 8, collect, &s, NULL);
    default:
        p.draft_kind = EDGESPEC_DRAFT_MODEL;
        *expected = EDGESPEC_ERR_MISSING_DRAFTER;
        return edgespec_session_new(target, NULL, &p, &bad);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: soak TARGET DRAFTER GENERATIONS MAX_TOKENS\n");
        return 2;
    }
    int generations = atoi(argv[3]);
    uint32_t max_tokens = (uint32_t)atoi(argv[4]);
    edgespec_model *target = NULL, *drafter = NULL;
    if (edgespec_model_load(argv[1], NULL, &target) != EDGESPEC_OK ||
        edgespec_model_load(argv[2], NULL, &drafter) != EDGESPEC_OK) {
        printf("FAIL load: %s\n", edgespec_last_error());
        return 1;
    }
    /* Each kind on each prompt in a fresh greedy session: what the soak's
     * greedy fixed-length runs must give. */
    static sink reference[N_KINDS][N_PROMPTS];
    edgespec_session *session = NULL;
    for (size_t k = 0; k < N_KINDS; k++) {
        for (size_t i = 0; i < N_PROMPTS; i++) {
            edgespec_session_params p = params_for(KINDS[k], false, false, 0);
            CHECK(edgespec_session_new(target, drafter_for(KINDS[k], drafter), &p, &session) == EDGESPEC_OK,
                  "reference session");
            CHECK(edgespec_session_generate(session, PROMPTS[i], false, max_tokens, collect, &reference[k][i], NULL) ==
                      EDGESPEC_OK,
                  "reference %zu/%zu", k, i);
            edgespec_session_free(&session);
            /* Lossless kinds give the target's own greedy output. */
            bool lossless = KINDS[k] == EDGESPEC_DRAFT_LOOKUP || KINDS[k] == EDGESPEC_DRAFT_MODEL ||
                            KINDS[k] == EDGESPEC_DRAFT_HYBRID;
            CHECK(!lossless || (reference[k][i].tokens == reference[0][i].tokens &&
                                memcmp(reference[k][i].ids, reference[0][i].ids,
                                       sizeof(int32_t) * (size_t)reference[0][i].tokens) == 0),
                  "kind %d on prompt %zu differs from the target alone", KINDS[k], i);
        }
    }

    long rss_warm = 0, rss_peak = 0;
    int calls = 0, errors = 0, cancelled = 0, compared = 0;
    size_t ki = 0;
    bool sampled = false, automatic = false;
    for (int g = 0; g < generations; g++) {
        if (g % 3 == 0 || session == NULL) {
            edgespec_session_free(&session);
            ki = (size_t)(g / 3) % N_KINDS;
            sampled = (g / 3) % 4 == 3;
            automatic = (g / 3) % 3 == 1;
            edgespec_session_params p = params_for(KINDS[ki], sampled, automatic, (uint64_t)g);
            edgespec_result rc = edgespec_session_new(target, drafter_for(KINDS[ki], drafter), &p, &session);
            calls++;
            CHECK(rc == EDGESPEC_OK, "session kind %d", KINDS[ki]);
            if (rc != EDGESPEC_OK) continue;
        }
        if (g % 11 == 5) {
            calls++;
            CHECK(edgespec_session_reset(session) == EDGESPEC_OK, "reset");
        }
        size_t pi = (size_t)(g * 5 + g / 3) % N_PROMPTS; /* every kind meets every prompt */
        sink s = {0};
        s.cancel_after = g % 5 == 2 ? 1 + g % 4 : 0;
        edgespec_stats stats = edgespec_stats_init();
        edgespec_result rc = edgespec_session_generate(session, PROMPTS[pi], false, max_tokens, collect, &s, &stats);
        calls++;
        CHECK(rc == EDGESPEC_OK, "generation %d kind %d", g, KINDS[ki]);
        if (rc == EDGESPEC_OK && s.cancel_after) {
            cancelled++;
            CHECK(stats.stop_reason == EDGESPEC_STOP_CALLBACK || (int)stats.generated_tokens < s.cancel_after,
                  "generation %d: cancel after %d gave stop %d", g, s.cancel_after, stats.stop_reason);
        }
        if (rc == EDGESPEC_OK && !sampled && !automatic) {
            compared++;
            const sink *r = &reference[ki][pi];
            int first_diff = -1;
            for (int t = 0; t < s.tokens && t < MAX_IDS && first_diff < 0; t++)
                if (t >= r->tokens || s.ids[t] != r->ids[t]) first_diff = t;
            bool equal = first_diff < 0 && (s.cancel_after || s.tokens == r->tokens);
            CHECK(equal, "generation %d kind %d differs from a fresh session at token %d of %d/%d", g, KINDS[ki],
                  first_diff, s.tokens, r->tokens);
            bool same_text = s.cancel_after ? strncmp(r->text, s.text, s.len) == 0 : strcmp(r->text, s.text) == 0;
            CHECK(!equal || same_text, "generation %d kind %d: same tokens, other text:\n  %s\n  %s", g, KINDS[ki],
                  r->text, s.text);
        }
        if (g % 7 == 6) {
            edgespec_result expected;
            rc = deliberate_error(g / 7, target, session, &expected);
            calls++;
            errors++;
            CHECK(rc == expected, "deliberate error %d gave %d, expected %d", (g / 7) % 5, (int)rc, (int)expected);
        }
        long rss = resident_kib();
        if (g == generations / 10) rss_warm = rss;
        if (rss > rss_peak) rss_peak = rss;
    }
    edgespec_session_free(&session);
    long rss_end = resident_kib();
    edgespec_model_free(&drafter);
    edgespec_model_free(&target);
    printf("generations %d, calls %d, deliberate errors %d, cancelled %d, compared with a fresh session %d\n",
           generations, calls, errors, cancelled, compared);
    printf("resident KiB: after warm-up %ld, peak %ld, end %ld (growth %ld)\n", rss_warm, rss_peak, rss_end,
           rss_end - rss_warm);
    CHECK(rss_end - rss_warm < 16 * 1024, "resident memory grew by %ld KiB", rss_end - rss_warm);
    if (failures == 0) printf("ALL OK\n");
    return failures != 0;
}
