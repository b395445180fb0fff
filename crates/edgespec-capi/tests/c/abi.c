/* The C ABI's growth and ecosystem parts: version macros, struct_size on
 * every parameter and result struct, the samplers and stop strings from C
 * (exact under speculation), and the log callback. Prints "ALL OK" when
 * every check held. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "edgespec.h"
#include "check.h"

typedef struct {
    char text[4096];
    size_t len;
    int tokens;
} sink;

static bool collect(const char *text, size_t len, int32_t token, void *user) {
    sink *s = user;
    if (token >= 0) s->tokens++;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = 0;
    }
    return true;
}

typedef struct {
    int lines;
    int from_llama;
    int above_level;
    int max_level;
} log_count;

static void count_log(int32_t level, const char *source, const char *message, void *user) {
    log_count *c = user;
    c->lines++;
    if (strcmp(source, "llama.cpp") == 0) c->from_llama++;
    if (level > c->max_level || message == NULL) c->above_level++;
}

/* One greedy generation of 24 tokens with `p` (and a grammar unless
 * NULL); returns its stop reason. */
static int generate(const edgespec_model *target, const edgespec_model *drafter,
                    const edgespec_session_params *p, const char *const *stops, size_t n_stops,
                    const char *grammar, sink *out) {
    edgespec_session *s = NULL;
    memset(out, 0, sizeof *out);
    CHECK(edgespec_session_new(target, drafter, p, &s) == EDGESPEC_OK, "session");
    if (s == NULL) return -1;
    CHECK(edgespec_session_set_stop_strings(s, stops, n_stops) == EDGESPEC_OK, "stops");
    CHECK(edgespec_session_set_grammar(s, grammar) == EDGESPEC_OK, "grammar");
    edgespec_stats st = edgespec_stats_init();
    CHECK(edgespec_session_generate(s, "kalo mine suta", false, 24, collect, out, &st) == EDGESPEC_OK,
          "generate");
    edgespec_session_free(&s);
    return st.stop_reason;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;

    /* Version macros: the linked library is the header's. */
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", EDGESPEC_VERSION_MAJOR, EDGESPEC_VERSION_MINOR,
             EDGESPEC_VERSION_PATCH);
    CHECK(strcmp(version, edgespec_version()) == 0, "version %s vs %s", version, edgespec_version());

    /* The log callback: llama.cpp's model-loading report arrives at DEBUG. */
    log_count logs = {.max_level = EDGESPEC_LOG_DEBUG};
    CHECK(edgespec_set_log_callback(count_log, 9, &logs) == EDGESPEC_ERR_INVALID_PARAMETER, "level 9");
    CHECK(edgespec_set_log_callback(count_log, EDGESPEC_LOG_DEBUG, &logs) == EDGESPEC_OK, "callback");
    edgespec_model *target = NULL, *drafter = NULL;
    if (edgespec_model_load(argv[1], NULL, &target) != EDGESPEC_OK ||
        edgespec_model_load(argv[2], NULL, &drafter) != EDGESPEC_OK) {
        printf("FAIL load: %s\n", edgespec_last_error());
        return 1;
    }
    CHECK(logs.lines > 0 && logs.from_llama > 0 && logs.above_level == 0,
          "log lines %d, from llama.cpp %d, above the level %d", logs.lines, logs.from_llama,
          logs.above_level);
    CHECK(edgespec_set_log_callback(NULL, EDGESPEC_LOG_DEBUG, NULL) == EDGESPEC_OK, "callback off");
    int before = logs.lines;
    edgespec_model *again = NULL;
    CHECK(edgespec_model_load(argv[2], NULL, &again) == EDGESPEC_OK, "load again");
    edgespec_model_free(&again);
    CHECK(logs.lines == before, "logged %d lines after the callback was removed", logs.lines - before);

    /* struct_size: unset is refused; a newer caller's bigger struct is taken
     * while the fields this library does not know are zero. */
    edgespec_session_params p = edgespec_session_params_default();
    CHECK(p.struct_size == sizeof p, "default struct_size %u", p.struct_size);
    edgespec_session *s = NULL;
    p.struct_size = 0;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "size 0");
    struct {
        edgespec_session_params p;
        uint64_t future[2];
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.p = edgespec_session_params_default();
    newer.p.struct_size = sizeof newer;
    CHECK(edgespec_session_new(target, NULL, &newer.p, &s) == EDGESPEC_OK, "newer, zero tail");
    edgespec_session_free(&s);
    newer.future[1] = 7;
    CHECK(edgespec_session_new(target, NULL, &newer.p, &s) == EDGESPEC_ERR_INVALID_PARAMETER,
          "newer, unknown field set");
    CHECK(s == NULL, "out written on failure");
    edgespec_model_params mp = edgespec_model_params_default();
    mp.struct_size = 3;
    CHECK(edgespec_model_load(argv[1], &mp, &again) == EDGESPEC_ERR_INVALID_PARAMETER, "model size 3");

    /* An unset stats struct is refused before anything is generated. */
    p = edgespec_session_params_default();
    p.n_threads = 2;
    p.n_ctx = 512;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_OK, "session");
    edgespec_stats unset;
    memset(&unset, 0, sizeof unset);
    sink streamed = {0};
    CHECK(edgespec_session_generate(s, "kalo", false, 8, collect, &streamed, &unset) ==
              EDGESPEC_ERR_INVALID_PARAMETER,
          "stats without struct_size");
    CHECK(streamed.tokens == 0, "generated %d tokens before refusing", streamed.tokens);

    /* Stop strings: bad arguments get their codes. */
    const char *too_many[65];
    for (int i = 0; i < 65; i++) too_many[i] = "x";
    CHECK(edgespec_session_set_stop_strings(s, too_many, 65) == EDGESPEC_ERR_INVALID_PARAMETER, "65 stops");
    CHECK(edgespec_session_set_stop_strings(s, NULL, 1) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL stops");
    const char *null_entry[1] = {NULL};
    CHECK(edgespec_session_set_stop_strings(s, null_entry, 1) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL entry");
    const char *bad_utf8[1] = {"\xc3\x28"};
    CHECK(edgespec_session_set_stop_strings(s, bad_utf8, 1) == EDGESPEC_ERR_INVALID_UTF8, "bad UTF-8");
    CHECK(edgespec_session_set_stop_strings(s, NULL, 0) == EDGESPEC_OK, "clear");
    CHECK(edgespec_session_set_stop_strings(NULL, NULL, 0) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL session");
    edgespec_session_free(&s);

    /* Sampler settings out of range. */
    const struct {
        const char *what;
        float min_p, repeat, frequency;
        int32_t last_n;
    } bad[] = {{"min_p 2", 2.0f, 1.0f, 0.0f, 64},
               {"repeat_penalty 0", 0.0f, 0.0f, 0.0f, 64},
               {"repeat_last_n -2", 0.0f, 1.0f, 0.0f, -2},
               {"frequency_penalty inf", 0.0f, 1.0f, INFINITY, 64}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = edgespec_session_params_default();
        p.min_p = bad[i].min_p;
        p.repeat_penalty = bad[i].repeat;
        p.frequency_penalty = bad[i].frequency;
        p.repeat_last_n = bad[i].last_n;
        CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "%s", bad[i].what);
    }
    p = edgespec_session_params_default();
    p.mirostat = 1;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "mirostat 1");
    p.mirostat = 2;
    p.mirostat_eta = 0.0f;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "mirostat eta 0");
    p.mirostat_eta = 0.1f;
    p.temperature = 0.8f;
    CHECK(edgespec_session_new(target, drafter, &p, &s) == EDGESPEC_OK, "mirostat 2");
    edgespec_session_free(&s);
    p = edgespec_session_params_default();
    CHECK(p.draft_tree == 0, "trees where they pay by default");
    p.draft_tree = 3;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "draft_tree 3");
    p.draft_tree = -1;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "draft_tree -1");

    /* Exact mode, flash attention, cache types: out-of-range values are
     * refused, exact mode on a repacked target too; a quantized cache and an
     * exact session on a target loaded without repacking work, and exact
     * speculation gives the exact target alone's text. */
    p = edgespec_session_params_default();
    p.n_threads = 2;
    p.n_ctx = 512;
    CHECK(p.exact == 0 && p.flash_attn == -1 && p.cache_type_k == EDGESPEC_CACHE_F16 &&
              p.cache_type_v == EDGESPEC_CACHE_F16,
          "exact off, flash attention auto, f16 cache by default");
    p.exact = 2;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "exact 2");
    p.exact = 1;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER,
          "exact on a repacked target");
    p.exact = 0;
    p.flash_attn = 2;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "flash_attn 2");
    p.flash_attn = 0;
    p.cache_type_v = EDGESPEC_CACHE_Q8_0;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER,
          "a quantized value cache without flash attention");
    p.flash_attn = -1;
    p.cache_type_v = EDGESPEC_CACHE_F16;
    p.cache_type_k = 7;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER, "cache type 7");
    p.cache_type_k = EDGESPEC_CACHE_Q8_0;
    CHECK(edgespec_session_new(target, NULL, &p, &s) == EDGESPEC_ERR_INVALID_PARAMETER,
          "a q8_0 cache on heads narrower than its 32-value blocks");
    p.cache_type_k = EDGESPEC_CACHE_F16;
    edgespec_model *unrepacked = NULL;
    edgespec_model_params layout = edgespec_model_params_default();
    CHECK(layout.repack, "repacking on by default");
    layout.repack = false;
    CHECK(edgespec_model_load(argv[1], &layout, &unrepacked) == EDGESPEC_OK, "load without repacking");
    static sink exact_alone, exact_spec;
    p.exact = 1;
    generate(unrepacked, NULL, &p, NULL, 0, NULL, &exact_alone);
    p.draft_kind = EDGESPEC_DRAFT_LOOKUP;
    generate(unrepacked, NULL, &p, NULL, 0, NULL, &exact_spec);
    CHECK(exact_alone.len > 0 && strcmp(exact_alone.text, exact_spec.text) == 0,
          "exact lookup '%s' vs exact alone '%s'", exact_spec.text, exact_alone.text);
    edgespec_model_free(&unrepacked);

    /* Penalties change the greedy output, and speculation keeps it exact. */
    p = edgespec_session_params_default();
    p.n_threads = 2;
    p.n_ctx = 512;
    static sink plain, alone, spec, cut;
    generate(target, NULL, &p, NULL, 0, NULL, &plain);
    p.repeat_penalty = 3.0f;
    p.frequency_penalty = 3.0f;
    p.presence_penalty = 3.0f;
    p.repeat_last_n = 16;
    generate(target, NULL, &p, NULL, 0, NULL, &alone);
    CHECK(strcmp(plain.text, alone.text) != 0, "the penalties changed nothing");
    p.draft_kind = EDGESPEC_DRAFT_MODEL;
    p.gamma = 4;
    generate(target, drafter, &p, NULL, 0, NULL, &spec);
    CHECK(strcmp(alone.text, spec.text) == 0, "speculative '%s' vs alone '%s'", spec.text, alone.text);
    /* Free drafts as trees (every branch offered): the same text. */
    static sink trees;
    p.draft_kind = EDGESPEC_DRAFT_LOOKUP;
    p.gamma = -1;
    p.draft_tree = 2;
    generate(target, NULL, &p, NULL, 0, NULL, &trees);
    CHECK(strcmp(alone.text, trees.text) == 0, "trees '%s' vs alone '%s'", trees.text, alone.text);
    p.draft_kind = EDGESPEC_DRAFT_MODEL;
    p.gamma = 4;
    p.draft_tree = 0;

    /* A stop string from the middle of that output (three ASCII letters)
     * cuts it there, left out. */
    size_t mid = alone.len / 2;
    while (mid + 3 < alone.len && !(alone.text[mid] >= 'a' && alone.text[mid] <= 'z' &&
                                    alone.text[mid + 1] >= 'a' && alone.text[mid + 1] <= 'z' &&
                                    alone.text[mid + 2] >= 'a' && alone.text[mid + 2] <= 'z'))
        mid++;
    CHECK(mid + 3 < alone.len, "no three letters in a row in '%s'", alone.text);
    char stop[4] = {0};
    memcpy(stop, alone.text + mid, 3);
    const char *stops[1] = {stop};
    int reason = generate(target, drafter, &p, stops, 1, NULL, &cut);
    size_t at = (size_t)(strstr(alone.text, stop) - alone.text);
    CHECK(reason == EDGESPEC_STOP_STRING, "stop reason %d", reason);
    CHECK(cut.len == at && strncmp(cut.text, alone.text, at) == 0, "cut '%s' of '%s' at '%s'", cut.text,
          alone.text, stop);

    /* A grammar: only what it allows, speculative as the target alone; one
     * that does not parse is refused; NULL removes it. */
    static sink g_alone, g_spec, g_done;
    const char *grammar = "root ::= \" lo\" [a-z ]*";
    p = edgespec_session_params_default();
    p.n_threads = 2;
    p.n_ctx = 512;
    generate(target, NULL, &p, NULL, 0, grammar, &g_alone);
    CHECK(strncmp(g_alone.text, " lo", 3) == 0 && strspn(g_alone.text, " abcdefghijklmnopqrstuvwxyz") == g_alone.len,
          "grammar output '%s'", g_alone.text);
    CHECK(strcmp(g_alone.text, plain.text) != 0, "the grammar changed nothing");
    p.draft_kind = EDGESPEC_DRAFT_MODEL;
    p.gamma = 4;
    generate(target, drafter, &p, NULL, 0, grammar, &g_spec);
    CHECK(strcmp(g_alone.text, g_spec.text) == 0, "grammar: speculative '%s' vs alone '%s'", g_spec.text,
          g_alone.text);
    reason = generate(target, drafter, &p, NULL, 0, "root ::= \" kalo\"", &g_done);
    CHECK(reason == EDGESPEC_STOP_EOG && strcmp(g_done.text, " kalo") == 0, "complete grammar: %d '%s'",
          reason, g_done.text);
    CHECK(edgespec_session_new(target, drafter, &p, &s) == EDGESPEC_OK, "session");
    CHECK(edgespec_session_set_grammar(s, "root ::= (") == EDGESPEC_ERR_INVALID_PARAMETER, "bad grammar");
    CHECK(edgespec_session_set_grammar(s, "root ::= \"\xc3\x28\"") != EDGESPEC_OK, "bad UTF-8 grammar");
    CHECK(edgespec_session_set_grammar(NULL, grammar) == EDGESPEC_ERR_NULL_ARGUMENT, "NULL session");
    CHECK(edgespec_session_set_grammar(s, NULL) == EDGESPEC_OK, "no grammar");
    edgespec_session_free(&s);

    edgespec_model_free(&target);
    edgespec_model_free(&drafter);
    if (failures == 0) printf("ALL OK\n");
    return failures != 0;
}
