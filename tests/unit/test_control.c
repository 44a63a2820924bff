/* Unit tests for the control loop's decisions (control.h): the seed's two worked examples
 * step for step, the order of the gates, the planner's hand-over between policies, and the
 * rollout hash. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "control.h"

#include <stdio.h>
#include <string.h>

/* Plays a loop in which every remediation fails, as the controller would: plan, take the
 * step, record it. @returns the number of steps; steps[] holds them. */
static size_t play_failing(const struct pl_control_policy *p, size_t np,
                           struct pl_control_step *steps, size_t cap,
                           struct pl_gate_decision *gates)
{
    size_t n = 0;
    struct pl_control_next next;
    while (n < cap && pl_control_plan(p, np, steps, n, &next)) {
        gates[n] = next.gate;
        steps[n] = (struct pl_control_step){next.policy, next.gate.kind, false};
        n++;
    }
    return n;
}

/* Seed: "A policy has max_retry_depth: 2. The trace hits the policy and is retried once
 * (control_loop_depth: 1). The retry fails the eval again and is retried a second time
 * (control_loop_depth: 2). The second retry also fails. On the third attempt, the retry is
 * auto-converted to escalate and the trace goes to the HITL queue." */
static void test_seed_retry_depth_example(void **state)
{
    (void)state;
    struct pl_control_policy p[] = {{PL_ACTION_RETRY, 2, 5}};
    struct pl_control_step steps[16];
    struct pl_gate_decision gates[16];
    size_t n = play_failing(p, 1, steps, 16, gates);
    assert_int_equal(n, 3);
    assert_int_equal(gates[0].kind, PL_ACTION_RETRY);
    assert_int_equal(pl_control_loop_depth(steps, 1), 1);
    assert_int_equal(gates[1].kind, PL_ACTION_RETRY);
    assert_int_equal(pl_control_loop_depth(steps, 2), 2);
    assert_int_equal(gates[2].kind, PL_ACTION_ESCALATE);
    assert_string_equal(gates[2].escalation_reason, PL_ESCALATION_RETRY);
    assert_int_equal(gates[2].retry_count, 2);
    assert_true(gates[2].require_approval);
    /* escalations are not counted; no further retries occur */
    assert_int_equal(pl_control_loop_depth(steps, 3), 2);
    struct pl_control_next next;
    assert_false(pl_control_plan(p, 1, steps, n, &next));
}

/* Seed: "retry → fallback_model → prompt_modification with max_cascade_depth: 2": the third
 * is escalated with cascade_depth_exhausted. */
static void test_seed_cascade_depth_example(void **state)
{
    (void)state;
    struct pl_control_policy p[] = {{PL_ACTION_RETRY, 3, 2},
                                    {PL_ACTION_FALLBACK_MODEL, 3, 2},
                                    {PL_ACTION_PROMPT_MODIFICATION, 3, 2}};
    struct pl_control_step steps[16];
    struct pl_gate_decision gates[16];
    size_t n = play_failing(p, 3, steps, 16, gates);
    assert_int_equal(n, 3);
    assert_int_equal(steps[0].policy, 0);
    assert_int_equal(gates[0].kind, PL_ACTION_RETRY);
    assert_int_equal(steps[1].policy, 1);
    assert_int_equal(gates[1].kind, PL_ACTION_FALLBACK_MODEL);
    assert_int_equal(steps[2].policy, 2);
    assert_int_equal(gates[2].kind, PL_ACTION_ESCALATE); /* was prompt_modification */
    assert_string_equal(gates[2].escalation_reason, PL_ESCALATION_CASCADE);
    assert_null(gates[0].escalation_reason);
    assert_null(gates[1].escalation_reason);
}

/* Both gates would trip: the cascade gate runs first and names itself. */
static void test_cascade_gate_first(void **state)
{
    (void)state;
    struct pl_gate_decision d;
    pl_control_gate(PL_ACTION_RETRY, 5, 3, 3, 5, &d);
    assert_int_equal(d.kind, PL_ACTION_ESCALATE);
    assert_string_equal(d.escalation_reason, PL_ESCALATION_CASCADE);
    pl_control_gate(PL_ACTION_RETRY, 4, 3, 3, 5, &d);
    assert_string_equal(d.escalation_reason, PL_ESCALATION_RETRY);
    pl_control_gate(PL_ACTION_RETRY, 4, 2, 3, 5, &d);
    assert_int_equal(d.kind, PL_ACTION_RETRY);
    assert_null(d.escalation_reason);
    assert_false(d.require_approval);
    /* the retry gate counts retries only: a fallback is never a retry-gate escalation */
    pl_control_gate(PL_ACTION_FALLBACK_MODEL, 1, 10, 1, 5, &d);
    assert_int_equal(d.kind, PL_ACTION_FALLBACK_MODEL);
    /* escalate and block are no remediations: gates leave them alone */
    pl_control_gate(PL_ACTION_BLOCK, 99, 99, 1, 1, &d);
    assert_int_equal(d.kind, PL_ACTION_BLOCK);
    pl_control_gate(PL_ACTION_ESCALATE, 0, 0, 1, 1, &d);
    assert_int_equal(d.kind, PL_ACTION_ESCALATE);
    assert_true(d.require_approval);
    assert_null(d.escalation_reason);
}

/* A passing remediation stops the loop; an escalate or block policy ends it; a list without
 * a retry policy ends after its last policy. */
static void test_plan_stops(void **state)
{
    (void)state;
    struct pl_control_policy p[] = {{PL_ACTION_RETRY, 3, 5}, {PL_ACTION_FALLBACK_MODEL, 3, 5}};
    struct pl_control_step fixed[] = {{0, PL_ACTION_RETRY, true}};
    struct pl_control_next next;
    assert_false(pl_control_plan(p, 2, fixed, 1, &next));
    struct pl_control_policy esc[] = {{PL_ACTION_FALLBACK_MODEL, 3, 5}, {PL_ACTION_ESCALATE, 3, 5}};
    struct pl_control_step s1[] = {{0, PL_ACTION_FALLBACK_MODEL, false}};
    assert_true(pl_control_plan(esc, 2, s1, 1, &next));
    assert_int_equal(next.policy, 1);
    assert_int_equal(next.gate.kind, PL_ACTION_ESCALATE);
    assert_null(next.gate.escalation_reason); /* an escalate policy, no gate */
    struct pl_control_step s2[] = {{0, PL_ACTION_FALLBACK_MODEL, false},
                                   {1, PL_ACTION_ESCALATE, false}};
    assert_false(pl_control_plan(esc, 2, s2, 2, &next));
    struct pl_control_policy only_fallback[] = {{PL_ACTION_FALLBACK_MODEL, 3, 5}};
    assert_false(pl_control_plan(only_fallback, 1, s1, 1, &next));
    assert_false(pl_control_plan(p, 0, NULL, 0, &next)); /* no policy */
}

/* Past the last policy the first retry policy runs again, until a gate escalates: the loop
 * always ends, within max_cascade_depth remediations. */
static void test_plan_wraps_to_retry_and_ends(void **state)
{
    (void)state;
    struct pl_control_policy p[] = {{PL_ACTION_FALLBACK_MODEL, 3, 4},
                                    {PL_ACTION_RETRY, 10, 4},
                                    {PL_ACTION_PROMPT_MODIFICATION, 3, 4}};
    struct pl_control_step steps[64];
    struct pl_gate_decision gates[64];
    size_t n = play_failing(p, 3, steps, 64, gates);
    /* fallback, retry, prompt_modification, retry again (wrapped), then prompt_modification
     * meets the cascade gate (4 remediations) */
    assert_int_equal(n, 5);
    size_t want_policy[] = {0, 1, 2, 1, 2};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(steps[i].policy, want_policy[i]);
    assert_int_equal(gates[4].kind, PL_ACTION_ESCALATE);
    assert_string_equal(gates[4].escalation_reason, PL_ESCALATION_CASCADE);
    assert_int_equal(gates[4].retry_count, 0); /* policy 2 never retried */
}

static void test_kind_names(void **state)
{
    (void)state;
    for (int k = 0; k < PL_ACTION_NKINDS; k++) {
        enum pl_action_kind back;
        assert_int_equal(pl_action_kind_parse(pl_action_kind_name((enum pl_action_kind)k), &back),
                         0);
        assert_int_equal(back, k);
    }
    enum pl_action_kind k;
    assert_int_equal(pl_action_kind_parse("Retry", &k), -1);
    assert_int_equal(pl_action_kind_parse("", &k), -1);
    assert_int_equal(pl_action_kind_parse(NULL, &k), -1);
    assert_null(pl_action_kind_name(PL_ACTION_NKINDS));
    assert_true(pl_action_is_remediation(PL_ACTION_PROMPT_MODIFICATION));
    assert_false(pl_action_is_remediation(PL_ACTION_ESCALATE));
}

/* rollout_pct: 0 never, 100 always, 50 about half, and the same answer for the same trace. */
static void test_rollout(void **state)
{
    (void)state;
    int in50 = 0;
    char id[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof(id), "trace-%d", i);
        assert_false(pl_control_in_rollout(id, 0));
        assert_true(pl_control_in_rollout(id, 100));
        bool a = pl_control_in_rollout(id, 50);
        assert_true(a == pl_control_in_rollout(id, 50));
        in50 += a;
    }
    assert_in_range(in50, 4800, 5200);
    /* monotone in the share: in at 10 % means in at 20 % */
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        if (pl_control_in_rollout(id, 10))
            assert_true(pl_control_in_rollout(id, 20));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_retry_depth_example),
        cmocka_unit_test(test_seed_cascade_depth_example),
        cmocka_unit_test(test_cascade_gate_first),
        cmocka_unit_test(test_plan_stops),
        cmocka_unit_test(test_plan_wraps_to_retry_and_ends),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_rollout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
