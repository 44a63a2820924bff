/* Eval-rule evaluators: compile a rule's (evaluator_type, config) once, then run it on
 * traces. Shared by the detector (failure detection), the A/B harness (scoring) and the
 * monitor (rolling pass rate). Pure functions of their input: no database, no Kafka.
 *
 * A compiled rule is immutable, so one rule may be run from many threads at once. */
#ifndef PL_EVALUATE_H
#define PL_EVALUATE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pl_eval_type {
    PL_EVAL_ERROR_FREE,      /* no trace error and no span error */
    PL_EVAL_JSON_VALID,      /* output is strict RFC 8259 JSON; {"require_object": bool} */
    PL_EVAL_REGEX_MATCH,     /* output matches {"pattern", "flags"?} */
    PL_EVAL_REGEX_ABSENT,    /* output does not match {"pattern", "flags"?} */
    PL_EVAL_CONTAINS,        /* output contains {"value", "case_insensitive"?} */
    PL_EVAL_NOT_CONTAINS,    /* output does not contain {"value", "case_insensitive"?} */
    PL_EVAL_MAX_LENGTH,      /* output has at most {"max"} characters (code points) */
    PL_EVAL_SCORE_THRESHOLD, /* eval_scores[metric_name] within {"min"?, "max"?} */
};

/** Limits (see evaluate.c for why these values). */
#define PL_EVAL_TEXT_MAX        1024   /* bytes of a pattern or a contains value */
#define PL_EVAL_JSON_MAX_DEPTH  128    /* deeper JSON output counts as invalid */
#define PL_EVAL_REGEX_MATCH_MAX 100000 /* pcre2 match limit (per start position) */
#define PL_EVAL_REGEX_DEPTH_MAX 1000   /* pcre2 backtracking depth limit */
#define PL_EVAL_REGEX_HEAP_KIB  2048   /* pcre2 heap limit for one match */
#define PL_EVAL_REGEX_BUDGET_MS 100    /* wall-clock budget of one regex search */
#define PL_EVAL_FEEDBACK_SIZE   256

/** How a run ended. ERROR ("error evaluating", e.g. a regex limit hit) never passes. */
enum pl_eval_status { PL_EVAL_PASS, PL_EVAL_FAIL, PL_EVAL_ERROR };

/** What a rule is run on; every pointer is borrowed for the duration of the call. */
struct pl_eval_input {
    const char *output; /* the trace output as text; NULL when the trace has none */
    size_t output_len;  /* bytes of output; 0 means strlen(output) (then NUL-terminated) */
    const char *error;  /* trace-level error; NULL or "" when none */
    const char *const *span_errors; /* error texts of the failing spans, or NULL (count only) */
    size_t n_span_errors;           /* number of spans with an error set */
    json_object *eval_scores;       /* client-provided {metric: number}; may be NULL */
};

/** Why a rule was not (fully) run: an evaluation budget, not the rule, decided. */
enum pl_eval_skip {
    PL_EVAL_RAN,         /* the rule ran to its own end */
    PL_EVAL_SKIP_TRACE,  /* the trace's budget was spent (before or during the rule) */
    PL_EVAL_SKIP_TENANT, /* the tenant's budget for costly rules was spent */
};

struct pl_eval_result {
    bool passed; /* status == PL_EVAL_PASS */
    enum pl_eval_status status;
    enum pl_eval_skip skipped; /* not PL_EVAL_RAN: status is ERROR, the rule was not judged */
    char feedback[PL_EVAL_FEEDBACK_SIZE]; /* why it did not pass (one line); "" on a pass */
};

struct pl_eval_rule;

/** @brief Maps an evaluator_type name ("error_free", ...) to its type; -1 if unknown. */
int pl_eval_type_parse(const char *name, enum pl_eval_type *out);

/** @brief The evaluator_type name of t (a static string). */
const char *pl_eval_type_name(enum pl_eval_type t);

/**
 * @brief Validates config strictly for evaluator_type and compiles the rule (regexes are
 *        compiled here, once). config may be NULL (same as {}) and is only read: nothing
 *        in it is kept. metric_name is copied; it is required (non-empty) for
 *        score_threshold, where it names the eval_scores member.
 * @returns 0 with *out set (the caller frees it with pl_eval_rule_free), or -1 with a
 *          message naming the field in err (e.g. "config.pattern must not be empty") and
 *          *out untouched. Every -1 is a client error (the API answers 422).
 */
int pl_eval_rule_compile(const char *evaluator_type, json_object *config, const char *metric_name,
                         struct pl_eval_rule **out, char *err, size_t errsz);

/** @brief Frees a rule from pl_eval_rule_compile (NULL is fine). */
void pl_eval_rule_free(struct pl_eval_rule *r);

/** @brief The rule's evaluator type. */
enum pl_eval_type pl_eval_rule_type(const struct pl_eval_rule *r);

/** @brief The rule's metric name as given to compile ("" when none); owned by the rule. */
const char *pl_eval_rule_metric(const struct pl_eval_rule *r);

/**
 * @brief Runs rule r on in and fills *res. Thread-safe: one rule may be run concurrently
 *        (each call allocates its own PCRE2 match state). Bounded time: a regex search
 *        that hits a PCRE2 limit or PL_EVAL_REGEX_BUDGET_MS ends as PL_EVAL_ERROR with
 *        feedback "regex match limit exceeded".
 * @returns res->status.
 */
enum pl_eval_status pl_eval_rule_run(const struct pl_eval_rule *r, const struct pl_eval_input *in,
                                     struct pl_eval_result *res);

/** @brief True for rules whose cost depends on the pattern, not only the output's length:
 *         PCRE2 searches (regex_match, regex_absent, case-insensitive contains). */
bool pl_eval_rule_costly(const struct pl_eval_rule *r);

/** @brief A monotonic clock in microseconds: the clock of every budget below. */
int64_t pl_eval_now_us(void);

/**
 * Per-tenant budgets for costly rules, as a generic cell rate: a tenant may spend budget_us
 * of costly-rule time in any window_us, in bursts of up to budget_us. Pure bookkeeping on
 * the caller's clock values (no locking: one thread uses a ledger).
 */
struct pl_eval_ledger;

/** @brief A ledger; budget_ms 0 means no tenant budget (left is always INT64_MAX). */
struct pl_eval_ledger *pl_eval_ledger_new(int budget_ms, int window_ms);
void pl_eval_ledger_free(struct pl_eval_ledger *l);

/** @brief Microseconds of costly-rule time tenant may still spend at now_us (0 when spent). */
int64_t pl_eval_ledger_left(struct pl_eval_ledger *l, const char *tenant, int64_t now_us);

/** @brief Records spent_us of costly-rule time by tenant, started at now_us. */
void pl_eval_ledger_charge(struct pl_eval_ledger *l, const char *tenant, int64_t spent_us,
                           int64_t now_us);

/** What one trace's rules may spend. */
struct pl_eval_budget {
    int64_t trace_deadline_us;     /* pl_eval_now_us clock; 0: no trace budget */
    struct pl_eval_ledger *ledger; /* NULL: no tenant budget */
    const char *tenant_id;         /* the ledger's key */
};

/**
 * @brief Runs r under budget b, or skips it: a trace past its deadline skips every rule; a
 *        tenant with nothing left skips costly rules (cheap ones still run); a costly search
 *        is abandoned at whichever budget ends first. Costly-rule time is charged to the
 *        tenant. A skipped or abandoned rule ends as PL_EVAL_ERROR with res->skipped set
 *        and feedback saying which budget; a rule that hit its own limits is as in
 *        pl_eval_rule_run (res->skipped is PL_EVAL_RAN).
 * @returns res->status.
 */
enum pl_eval_status pl_eval_rule_run_budgeted(const struct pl_eval_rule *r,
                                              const struct pl_eval_input *in,
                                              const struct pl_eval_budget *b,
                                              struct pl_eval_result *res);

/**
 * @brief Runs rules[0..n) on in, in order, stopping at the first that does not pass
 *        (an ERROR counts as not passing: fail-safe).
 * @returns true with *failed set to that rule's index and *res to its result; false when
 *          every rule passed (*res then holds a pass, *failed is untouched).
 */
bool pl_eval_first_failure(const struct pl_eval_rule *const *rules, size_t n,
                           const struct pl_eval_input *in, size_t *failed,
                           struct pl_eval_result *res);

#endif
