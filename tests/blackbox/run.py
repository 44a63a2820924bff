#!/usr/bin/env python3
"""Black-box pass over every operation of schemas/openapi.yaml against a running stack.

Sends --count requests, round-robin over the operations of the OpenAPI file (plus requests
with a method the file does not list for the path). Each request starts from a valid
request of its operation and is mutated deterministically from --seed and its index:
dropped, duplicated or unknown keys, wrong types, extreme numbers, long strings, \\u0000,
invalid UTF-8, truncation, deep nesting, byte flips, empty and non-JSON bodies, wrong
content types, bad query strings and path ids, missing or wrong credentials, and a few
framing oddities. It fails when

  - any answer is a 5xx, or a request got no answer at all;
  - an answer's status is not listed for its operation in the OpenAPI file (a request
    with a method the file does not list for the path must be answered 405, which the
    file says once for all paths instead of per operation);
  - a service of the stack is no longer alive at the end, or /healthz is not 200.

The stack's variables must be exported (eval "$(scripts/stack up)"): PL_API_URL, PL_PG_DSN,
PL_BIN_DIR and, to check every service, PL_STACK_DIR. The pass makes its own tenants with
pl-admin and touches no other tenant's data nor any global switch.

  tests/blackbox/run.py --count 10000 --seed 1
  tests/blackbox/run.py --seed 1 --only 4711      # replays request 4711 of that run

Uses only the standard library and PyYAML (Debian: python3-yaml).
"""

import argparse
import collections
import json
import os
import random
import re
import select
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import yaml

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class Raw:
    """A JSON token written as is (a number JSON cannot hold, invalid bytes, a bad escape)."""

    def __init__(self, text):
        self.text = text if isinstance(text, bytes) else text.encode()


class Pairs:
    """A JSON object written member by member, so a key may appear twice."""

    def __init__(self, items):
        self.items = items


def encode(v):
    """JSON text of v (bytes), where Raw and Pairs may appear anywhere."""
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, Pairs):
        return b"{" + b",".join(encode_key(k) + b":" + encode(x) for k, x in v.items) + b"}"
    if isinstance(v, dict):
        return encode(Pairs(list(v.items())))
    if isinstance(v, list):
        return b"[" + b",".join(encode(x) for x in v) + b"]"
    return json.dumps(v).encode()


def encode_key(k):
    return k.text if isinstance(k, Raw) else json.dumps(k).encode()


# ---- HTTP: a raw client, so that any byte can go into the request line, headers and body ----


class Http:
    def __init__(self, base_url, timeout):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port or 80
        self.timeout = timeout
        self.sock = None

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _connect(self):
        if not self.sock:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            # no Nagle delay between a request's head and its body
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method, target, headers=(), body=None, version=b"HTTP/1.1", raw_head=None):
        """Sends one request; returns (status, {header: value}, body bytes); status 0 when the
        server closed the connection without an answer. A keep-alive connection closed by the
        server meanwhile is retried once on a new one."""
        if raw_head is None:
            head = [method.encode() + b" " + target + b" " + version]
            if not any(h[0].lower() == b"host" for h in headers):
                head.append(b"Host: " + f"{self.host}:{self.port}".encode())
            head += [k + b": " + v for k, v in headers]
            if body is not None and not any(
                h[0].lower() in (b"content-length", b"transfer-encoding") for h in headers
            ):
                head.append(b"Content-Length: " + str(len(body)).encode())
            raw_head = b"\r\n".join(head) + b"\r\n\r\n"
        for attempt in (0, 1):
            fresh = self.sock is None
            try:
                self._connect()
                answer = self._exchange(method, raw_head, body or b"")
                if version != b"HTTP/1.1":
                    self.close()  # no keep-alive to count on
                return answer
            except OSError as e:  # connection errors and time-outs
                self.close()
                if isinstance(e, socket.timeout) or fresh or attempt:
                    return 0, {}, repr(e).encode()
        return 0, {}, b""

    def _exchange(self, method, head, body):
        s = self.sock
        # A body over the server's limit is answered (413) before it is read: look for that
        # answer before sending the body, which the server would not take.
        if len(body) > (1 << 20):
            s.sendall(head)
            if select.select([s], [], [], 2.0)[0]:
                body = b""
        else:
            body = head + body  # one write: head and body in the same segments
        try:
            if body:
                s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early; the answer is read below
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(
                        "connection closed " + ("inside an answer" if buf else "without an answer")
                    )
                buf += chunk
            head_end = buf.index(b"\r\n\r\n")
            lines = buf[:head_end].split(b"\r\n")
            buf = buf[head_end + 4 :]
            status = int(lines[0].split()[1])
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                hdrs[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if status != 100:
                break
        data = b""
        if method == "HEAD" or status in (204, 304):
            pass
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                while b"\r\n" not in buf:
                    buf += self._recv()
                size_line, _, buf = buf.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    buf += self._recv()
                data += buf[:size]
                buf = buf[size + 2 :]
                if size == 0:
                    break
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(buf) < n:
                buf += self._recv()
            data = buf[:n]
        else:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            data = buf
            hdrs["connection"] = "close"
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside an answer")
        return chunk


# ---- the pass's own tenants and objects --------------------------------------------------


class Setup:
    """Makes the tenants, keys and objects every operation needs a valid request of, the
    way the integration tests do: pl-admin for tenants, projects, keys and a prompt, the
    API for the rest, SQL for prompt deployments (only the control loop makes those)."""

    def __init__(self, http):
        self.http = http
        self.bin = os.environ["PL_BIN_DIR"]
        self.dsn = os.environ["PL_PG_DSN"]

    def admin(self, *args):
        out = subprocess.run(
            [os.path.join(self.bin, "pl-admin"), *args],
            env=dict(os.environ, PL_PG_DSN=self.dsn),
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.split()

    def sql(self, query):
        out = subprocess.run(
            ["psql", self.dsn, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", query],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def api(self, method, path, key=None, body=None, want=(200, 201), headers=()):
        hdrs = list(headers)
        if key:
            hdrs.append((b"Authorization", b"Bearer " + key.encode()))
        data = None
        if body is not None:
            hdrs.append((b"Content-Type", b"application/json"))
            data = json.dumps(body).encode()
        status, h, text = self.http.request(method, path.encode(), hdrs, data)
        if status not in want:
            sys.exit(f"blackbox: setup {method} {path} answered {status}: {text[:300]!r}")
        return (json.loads(text) if text.strip() else None), h

    def tenant(self, plan, roles):
        name = f"blackbox-{uuid.uuid4().hex[:12]}"
        tid = self.admin("tenant", "create", "--name", name, "--plan", plan)[0]
        keys = {r: self.admin("apikey", "create", "--tenant", tid, "--role", r)[0] for r in roles}
        return name, tid, keys

    def wait(self, what, fn, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.2)
        print(f"blackbox: setup: {what} did not appear in {seconds} s", file=sys.stderr)
        return None

    def run(self):
        f = {}
        # T: the team tenant most requests act in. Project A receives the traces (its one eval
        # rule makes a failure cluster; its cluster_min_size keeps the differ out), project B
        # holds everything created through the API, so A's traces meet no fuzzed rule or policy.
        f["tenant_name"], f["tenant"], f["keys"] = self.tenant(
            "team", ("owner", "member", "viewer")
        )
        # S: a starter tenant (no control loop: 402); K: a team tenant for the kill switch, so
        # that switching it never stops T's executions.
        _, _, f["starter_keys"] = self.tenant("starter", ("owner", "viewer"))
        _, ks, f["ks_keys"] = self.tenant("team", ("owner", "member", "viewer"))
        f["ks_project"] = self.admin("project", "create", "--tenant", ks, "--name", "other")[0]
        owner, member, viewer = (f["keys"][r] for r in ("owner", "member", "viewer"))
        t = f["tenant"]
        f["project_a"] = self.admin("project", "create", "--tenant", t, "--name", "ingest")[0]
        f["project_b"] = self.admin("project", "create", "--tenant", t, "--name", "settings")[0]
        a, b = f["project_a"], f["project_b"]
        f["prompt"], f["version_1"] = self.admin(
            "prompt", "create", "--tenant", t, "--project", b, "--name", "bb-prompt",
            "--system", "You are a terse assistant.",
        )[:2]
        self.api("PATCH", f"/v1/projects/{a}", owner, {"cluster_min_size": 100000})
        envs, _ = self.api("GET", f"/v1/environments?project_id={b}", viewer)
        f["environment"] = envs["items"][0]["id"]
        v2, _ = self.api(
            "POST", f"/v1/prompts/{f['prompt']}/versions", member, {"manifest": MANIFEST}
        )
        f["version_2"] = v2["id"]
        hist, _ = self.api("GET", f"/v1/environments/{f['environment']}/deployments", viewer)
        f["env_deployment"] = hist["items"][0]["id"]

        def rule(project, metric, etype, config):
            body = {"project_id": project, "metric_name": metric, "evaluator_type": etype,
                    "config": config}
            return self.api("POST", "/v1/eval-rules", member, body)[0]["id"]

        f["rule_a"] = rule(a, "bb_error_free", "error_free", {})
        f["rule_patch"] = rule(b, "bb_contains", "contains", {"value": "x"})
        f["rule_used"] = rule(b, "bb_used", "json_valid", {})
        f["rule_free"] = rule(b, "bb_free", "max_length", {"max": 10})

        def policy(name):
            body = {"project_id": b, "name": name, "trigger_type": "eval_score",
                    "rule_id": f["rule_used"], "action_type": "retry"}
            return self.api("POST", "/v1/policies", owner, body)[0]["id"]

        f["policy_patch"], f["policy_delete"] = policy("bb-patch"), policy("bb-delete")

        # A stored, failing trace: what execute acts on and what makes a failure cluster.
        self.api("POST", "/v1/ingest", member, dict(TRACE, id="bb-stored", project_id=a))
        stored = self.wait(
            "the stored trace",
            lambda: self.api("GET", f"/v1/traces/bb-stored?project_id={a}", viewer,
                             want=(200, 404))[0].get("id"),
        )
        f["trace"] = "bb-stored" if stored else "bb-missing"
        f["cluster"] = self.wait(
            "a failure cluster",
            lambda: next(iter(self.api("GET", f"/v1/failures/clusters?project_id={a}",
                                       viewer)[0]["clusters"]), {}).get("id"),
        ) or str(uuid.uuid4())
        actions = []
        for kind in ("escalate", "escalate", "block"):
            body = {"project_id": a, "action_type": kind, "trace_id": f["trace"]}
            got, _ = self.api("POST", "/v1/control/execute", owner, body,
                              want=(201, 404))
            actions.append(got.get("id") if got and "id" in got else str(uuid.uuid4()))
        f["action_approve"], f["action_reject"], f["action_block"] = actions
        page, _ = self.api("GET", "/v1/control/actions?limit=1", viewer)
        f["actions_cursor"] = page.get("next_cursor") or "x"
        page, _ = self.api("GET", "/v1/control/actions/pending?limit=1", viewer)
        f["pending_cursor"] = page.get("next_cursor") or "x"

        # Prompt deployments are made by the control loop only: written directly, as the
        # integration tests do, tied to the fixture prompt so that shipping makes a version live.
        f["deployments"] = [
            self.sql(
                "INSERT INTO prompt_deployments (tenant_id, project_id, prompt_id,"
                " base_version_id, cluster_signature, status, current_prompt, proposed_prompt,"
                " rationale) VALUES"
                f" ('{t}', '{b}', '{f['prompt']}', '{f['version_1']}',"
                f" 'sha256:blackbox-{i}', '{status}', 'You are a terse assistant.',"
                " 'You are a terse assistant. Answer in JSON.', 'adds JSON') RETURNING id"
            ).splitlines()[0]
            for i, status in enumerate(("ab_passed", "proposed", "ab_running"))
        ]

        # Dashboard sessions: one to read with, one to sign out; one-time sign-in links.
        def session(key):
            got, h = self.api("POST", "/ui/session", body={"api_key": key})
            cookie = h.get("set-cookie", "").split(";")[0]
            return cookie, got["csrf_token"]

        f["session_read"], f["session_out"] = session(owner), session(owner)
        f["ks_session"] = session(f["ks_keys"]["owner"])
        f["links"] = [
            self.api("POST", "/ui/links", viewer)[0]["path"].rsplit("/", 1)[1] for _ in range(3)
        ]
        return f


MANIFEST = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "{{question}}", "name": "customer"},
    ],
    "variables": {"question": "hi"},
    "model_configuration": {
        "provider": "sim",
        "model": "sim-small",
        "parameters": {"temperature": 0.2, "max_tokens": 100},
    },
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    "response_format": {"type": "json_object"},
    "metadata": {"team": "blackbox"},
    "description": "blackbox fixture",
    "name": "ignored",
}

TRACE = {
    "id": "bb-ingest-1",
    "external_id": "ext-1",
    "name": "chat",
    "input": {"messages": [{"role": "user", "content": "hi"}]},
    "output": "hello",
    "model": "sim-small",
    "latency_ms": 120,
    "cost": 0.001,
    "error": "boom",
    "tags": {"env": "test"},
    "metadata": {"k": "v"},
    "spans": [
        {"id": "s1", "name": "llm", "type": "llm", "latency_ms": 100,
         "tokens": {"prompt": 3, "completion": 2}, "input": "hi", "output": "hello",
         "model": "sim-small", "start_time": "t0", "end_time": "t1", "metadata": {}}
    ],
    "events": [{"kind": "x"}],
    "prompt": {"name": "bb-prompt", "version": 1},
    "eval_scores": {"quality": 0.9},
    "created_at": "2026-01-31T12:00:00Z",
}


def operations(f):
    """The valid requests of each operation: role (key of tenant T, or an auth kind), path ids,
    query variants and body variants. Every operation of the OpenAPI file must be here."""
    a, b, p = f["project_a"], f["project_b"], f["prompt"]
    deps = f["deployments"]
    fqn = f"chat_prompt:{f['tenant_name']}/settings/bb-prompt"
    policy = {
        "project_id": b, "name": "bb-policy", "description": "made by the blackbox pass",
        "status": "draft", "trigger_type": "failure_rate",
        "trigger_params": {"window_s": 600, "threshold": 0.5, "min_traces": 20},
        "rule_id": f["rule_used"], "action_type": "fallback_model",
        "action_params": {"model": "sim-large"}, "rule_yaml": None, "priority": 100,
        "rollout_pct": 0, "dry_run": True, "max_retry_depth": 3, "max_cascade_depth": 5,
    }
    page = {"limit": "10", "offset": "0"}
    none = {"auth": "none"}
    return {
        ("GET", "/healthz"): none,
        ("GET", "/readyz"): none,
        ("GET", "/metrics"): none,
        ("GET", "/v1/prompts/deployments"): {
            "role": "viewer", "query": [{"status": "proposed", "project_id": b, **page}, {}]},
        ("GET", "/v1/prompts/deployments/{id}"): {"role": "viewer", "ids": deps},
        ("POST", "/v1/prompts/deployments/{id}/approve"): {
            "role": "owner", "ids": deps[:2], "body": [{}, None]},
        ("POST", "/v1/prompts/deployments/{id}/reject"): {
            "role": "owner", "ids": deps[1:], "body": [{"reason": "not better"}, {}, None]},
        ("POST", "/v1/prompts/deployments/{id}/rollback"): {
            "role": "owner", "ids": deps, "body": [{"reason": "regressed"}, None]},
        ("GET", "/v1/projects"): {"role": "viewer", "query": [page, {}]},
        ("POST", "/v1/projects"): {"role": "member", "body": [
            {"name": "bb-project", "prompt_autoship_enabled": False,
             "auto_rollback_enabled": True, "cluster_min_size": 10, "ab_min_delta": 0.05,
             "ab_alpha": 0.05, "ab_guardrail_tolerance": 0.03, "ab_holdout_size": 80,
             "ab_guardrail_size": 120, "regression_min_samples": 30, "regression_alpha": 0.01,
             "regression_tolerance": 0.02, "regression_baseline_size": 5000,
             "regression_window": 100, "ship_canary_pct": 0, "ship_canary_min_samples": 500,
             "hitl_timeout_s": 0},
            {"name": "settings"}]},
        ("GET", "/v1/projects/{id}"): {"role": "viewer", "ids": [a, b]},
        ("PATCH", "/v1/projects/{id}"): {"role": "owner", "ids": [b], "body": [
            {"name": "settings", "cluster_min_size": 50, "ab_alpha": 0.05,
             "ship_canary_pct": 10, "hitl_timeout_s": 3600, "auto_rollback_enabled": True},
            {"name": "ingest"}]},
        ("POST", "/v1/ingest"): {"role": "member", "body": [
            dict(TRACE, project_id=a), {"project_id": a, "output": "x"}]},
        ("POST", "/v1/ingest/batch"): {"role": "member", "body": [
            {"traces": [dict(TRACE, id="bb-batch-1", project_id=a),
                        {"id": "bb-batch-2", "project_id": a, "output": {"a": 1}}]}]},
        ("GET", "/v1/eval-rules"): {"role": "viewer", "query": [{"project_id": b, **page}]},
        ("POST", "/v1/eval-rules"): {"role": "member", "body": [
            {"project_id": b, "metric_name": "bb_contains", "evaluator_type": "contains",
             "config": {"value": "x", "case_insensitive": True}, "enabled": False},
            {"project_id": b, "metric_name": "bb.re", "evaluator_type": "regex_match",
             "config": {"pattern": "^a+$", "flags": "im"}},
            {"project_id": b, "metric_name": "quality", "evaluator_type": "score_threshold",
             "config": {"min": 0.1, "max": 0.9}},
            {"project_id": b, "metric_name": "len", "evaluator_type": "max_length",
             "config": {"max": 100}}]},
        ("GET", "/v1/eval-rules/{id}"): {"role": "viewer", "ids": [f["rule_patch"]]},
        ("PATCH", "/v1/eval-rules/{id}"): {"role": "member", "ids": [f["rule_patch"]], "body": [
            {"metric_name": "bb_patched", "enabled": True, "config": {"value": "y"}},
            {"evaluator_type": "regex_absent", "config": {"pattern": "no+", "flags": "s"}}]},
        ("DELETE", "/v1/eval-rules/{id}"): {
            "role": "owner", "ids": [f["rule_free"], f["rule_used"]]},
        ("GET", "/v1/policies"): {
            "role": "viewer", "query": [{"project_id": b, "status": "draft", **page}]},
        ("POST", "/v1/policies"): {"role": "owner", "body": [
            policy,
            {"project_id": b, "name": "bb-modify", "trigger_type": "eval_score",
             "action_type": "prompt_modification",
             "action_params": {"append_system": "Answer in JSON."}}]},
        ("GET", "/v1/policies/{id}"): {"role": "viewer", "ids": [f["policy_patch"]]},
        ("PATCH", "/v1/policies/{id}"): {"role": "owner", "ids": [f["policy_patch"]], "body": [
            {"name": "bb-patched", "priority": 50, "action_type": "fallback_model",
             "action_params": {"model": "sim-large"}, "rule_id": None},
            {"trigger_type": "failure_rate", "trigger_params": {"threshold": 0.2}}]},
        ("DELETE", "/v1/policies/{id}"): {"role": "owner", "ids": [f["policy_delete"]]},
        ("GET", "/v1/control/killswitch"): {"role": "ks_viewer"},
        ("POST", "/v1/control/killswitch/enable"): {"role": "ks_owner", "body": [None]},
        ("POST", "/v1/control/killswitch/disable"): {"role": "ks_owner", "body": [None]},
        ("POST", "/v1/control/execute"): {"role": "owner", "body": [
            {"project_id": a, "action_type": "retry", "trace_id": f["trace"],
             "rule_id": f["rule_a"], "payload": {}},
            {"project_id": a, "action_type": "fallback_model", "trace_id": f["trace"],
             "payload": {"model": "sim-large"}},
            {"project_id": a, "action_type": "prompt_modification", "trace_id": f["trace"],
             "payload": {"append_system": "Be brief."}},
            {"project_id": a, "action_type": "block", "trace_id": f["trace"], "rule_id": None}]},
        ("GET", "/v1/control/actions"): {"role": "viewer", "query": [
            {"status": "pending_approval", "trace_id": f["trace"], "project_id": a,
             "limit": "10"},
            {"policy_id": f["policy_patch"], "cursor": f["actions_cursor"]}]},
        ("GET", "/v1/control/actions/pending"): {"role": "viewer", "query": [
            {"project_id": a, "limit": "5"}, {"cursor": f["pending_cursor"]}]},
        ("GET", "/v1/control/actions/{id}"): {
            "role": "viewer", "ids": [f["action_approve"], f["action_block"]]},
        ("POST", "/v1/control/actions/{id}/reject"): {
            "role": "owner", "ids": [f["action_reject"]], "body": [{"reason": "not needed"}]},
        ("POST", "/v1/control/actions/{id}/approve"): {
            "role": "owner", "ids": [f["action_approve"]], "body": [None, {}]},
        ("GET", "/v1/control/actions/{id}/diff"): {
            "role": "viewer", "ids": [f["action_block"], f["action_approve"]]},
        ("GET", "/ui"): none,
        ("GET", "/ui/"): none,
        ("GET", "/ui/{file}"): {"auth": "none", "ids": ["index.html", "app.js", "app.css"]},
        ("POST", "/ui/session"): {"auth": "none", "body": [{"api_key": f["keys"]["viewer"]}]},
        ("GET", "/ui/session"): {"auth": "session_read"},
        ("DELETE", "/ui/session"): {"auth": "session_out"},
        ("POST", "/ui/links"): {"role": "viewer"},
        ("GET", "/ui/signin/{token}"): {"auth": "none", "ids": f["links"]},
        ("GET", "/v1/traces/{id}"): {
            "role": "viewer", "ids": [f["trace"]], "query": [{"project_id": a}]},
        ("GET", "/v1/failures/clusters"): {"role": "viewer", "query": [
            {"project_id": a, "from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00+00:00",
             "status": "new", **page}, {}]},
        ("GET", "/v1/failures/clusters/{id}"): {"role": "viewer", "ids": [f["cluster"]]},
        ("PATCH", "/v1/failures/clusters/{id}"): {
            "role": "owner", "ids": [f["cluster"]], "body": [{"status": "acknowledged"}]},
        ("GET", "/v1/prompts/deployments/{id}/series"): {"role": "viewer", "ids": deps},
        ("GET", "/v1/alerts"): {"role": "viewer", "query": [{"project_id": b}, {}]},
        ("GET", "/v1/audit-log"): {"role": "viewer", "query": [
            {"actor": "admin", "action": "prompt.create", "target": p,
             "from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "limit": "10"},
            {"cursor": "1000"}]},
        ("GET", "/v1/audit/verify"): {
            "role": "viewer", "query": [{"expected_head_hash": "0" * 64}, {}]},
        ("GET", "/v1/prompts"): {"role": "viewer", "query": [{"project_id": b, **page}]},
        ("POST", "/v1/prompts"): {"role": "member", "body": [
            {"project_id": b, "name": "bb-new", "manifest": MANIFEST, "version_alias": "v1"},
            {"project_id": b, "name": "bb-prompt"}]},
        ("GET", "/v1/prompts/{id}"): {"role": "viewer", "ids": [p]},
        ("POST", "/v1/prompts/{id}/versions"): {"role": "member", "ids": [p], "body": [
            {"manifest": MANIFEST, "version_alias": "v9"},
            {"manifest": {"messages": [{"role": "user", "content": "x"}]}}]},
        ("GET", "/v1/environments"): {
            "role": "viewer", "query": [{"project_id": b, "routing_key": "user-1"}]},
        ("GET", "/v1/environments/{id}/deployments"): {
            "role": "viewer", "ids": [f["environment"]], "query": [{"prompt_id": p, **page}]},
        ("POST", "/v1/environments/{id}/deployments"): {
            "role": "owner", "ids": [f["environment"]], "body": [
                {"prompt_id": p, "version_id": f["version_2"]},
                {"prompt_id": p, "version_id": f["version_1"]}]},
        ("GET", "/v2/deployments"): {"role": "viewer", "query": [
            {"promptId": p, "deploymentId": "current",
             "deploymentEnvironmentId": f["environment"], "routing_key": "user-1"},
            {"promptId": p, "deploymentId": f["env_deployment"]}]},
        ("GET", "/api/ml/v1/prompt-versions"): {"role": "viewer", "query": [
            {"fqn": fqn, "name": "bb-prompt", "version": "1", "prompt_id": p,
             "ml_repo_id": b, **page},
            {"fqn": fqn, "routing_key": "user-1"},
            {"tag": "stable", "version": "latest"}]},
        ("PUT", "/api/ml/v1/prompt-versions/tags"): {"role": "member", "body": [
            {"prompt_version_id": f["version_2"], "tags": ["stable", "bb"], "force": True},
            {"prompt_version_id": f["version_1"], "tags": ["stable"]}]},
    }


# ---- mutations -----------------------------------------------------------------------------

BAD_UTF8 = [b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\x80", b"\xc3", b"\xe2\x82"]
BAD_ESCAPES = [b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud800\\u0041", b"\\x41", b"\\", b"\\u12"]
NUMBERS = [
    "1e400", "-1e400", "1e-400", "-0", "0.5", "-1", "1.5", "99999999999999999999999999",
    "9223372036854775807", "9223372036854775808", "-9223372036854775809", "2147483648",
    "-2147483649", "18446744073709551616", "1.7976931348623157e309", "4.9e-325", "0",
    "1E2", "NaN", "Infinity", "-Infinity", "0x10", "01", "1.", ".5", "-", "1e", "+1",
]
WRONG_TYPES = [None, True, False, 0, 1, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": 1}, "null"]
QUERY_VALUES = [
    "", "-1", "0", "1e3", "abc", "99999999999999999999", "%00", "x%00y", "%C0%AF", "%ED%A0%80",
    "%F4%90%80%80", "%FF", "%", "%G1", "+", "a+b", "null", "true", "%5B%5D", "latest",
    "current", "2026-01-31T12:00:00Z", "2026-13-45T99:99:99Z", "2026-01-31T12:00:00+99:99",
    "00000000-0000-0000-0000-000000000000", "%27%20OR%201%3D1%20--", "%0A", "%01", "1.5",
    "9223372036854775808", "chat_prompt:", "chat_prompt:a/b/c:0", "chat_prompt:a/b/c:1",
    "chat_prompt:%2F%2F", "a" * 300, "%C3%A9" * 200, "2026-02-31T00:00:00Z",
    "0000-01-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:61Z", "1-01-01T00:00:00Z",
    "2026-01-01T00:00:00%2B24:00", "2026-01-01T00:00:00-ab:cd", "2026-01-01T00:00:00.Z",
    "10000-01-01T00:00:00Z", "2026-01-01T00:00:00.123456789123456789Z",
]


def mutate_text(rng, v):
    """A near miss of a valid parameter value: a digit or character changed, cut or extended."""
    if not v:
        return "x"
    i = rng.randrange(len(v))
    kind = rng.randrange(5)
    if kind == 0 and any(c.isdigit() for c in v):
        i = rng.choice([j for j, c in enumerate(v) if c.isdigit()])
        return v[:i] + rng.choice("0123456789") + v[i + 1 :]
    if kind == 1:
        return v[:i]
    if kind == 2:
        return v + rng.choice(["0", "x", "%00", "%C0%AF", "Z", ":00", "-", "%2B01:00"])
    if kind == 3:
        return v[:i] + rng.choice(["%00", "%C0%AF", "%20", "%0A", "-", "."]) + v[i:]
    return v.upper() if v != v.upper() else v.lower()


def slots(v, path=()):
    """Every place in v whose value can be replaced, as paths of keys and indexes."""
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            out.append(path + (k,))
            out += slots(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out.append(path + (i,))
            out += slots(x, path + (i,))
    return out


def get_in(v, path):
    for k in path:
        v = v[k]
    return v


def set_in(v, path, value):
    get_in(v, path[:-1])[path[-1]] = value


def containers(v, path=()):
    """Paths of every object in v (the root included)."""
    out = [path] if isinstance(v, dict) else []
    if isinstance(v, dict):
        for k, x in v.items():
            out += containers(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += containers(x, path + (i,))
    return out


def long_string(rng):
    n = rng.choice([129, 201, 257, 1001, 1025, 2001, 8193, 32769, 65537, 300000])
    return rng.choice(["a", "é", "😀", "\u2028", "<>&'\""]) * n


def string_with(rng, inner):
    """A JSON string token with inner (raw bytes) somewhere inside."""
    return Raw(b'"pre' + inner + b'post"' if rng.random() < 0.7 else b'"' + inner + b'"')


def deep(rng):
    n = rng.choice([64, 100, 1000, 10000, 100000])
    kind = rng.randrange(4)
    if kind == 0:
        return Raw(b"[" * n + b"]" * n)
    if kind == 1:
        return Raw(b'{"a":' * n + b"1" + b"}" * n)
    if kind == 2:
        return Raw(b"[" * n)  # never closed
    return Raw(b'[{"a":' * (n // 2) + b"null" + b"}]" * (n // 2))


def mutate_value(rng, v):
    """A replacement for one value: wrong type, extreme number, long or bad string, nesting."""
    r = rng.random()
    if r < 0.3:
        return rng.choice(WRONG_TYPES)
    if r < 0.5:
        return Raw(rng.choice(NUMBERS))
    if r < 0.62:
        return long_string(rng)
    if r < 0.72:
        return string_with(rng, rng.choice(BAD_UTF8))
    if r < 0.82:
        return string_with(rng, rng.choice(BAD_ESCAPES))
    if r < 0.9:
        return deep(rng)
    if isinstance(v, str) and v and rng.random() < 0.5:
        i = rng.randrange(len(v) + 1)
        return v[:i] + rng.choice(["\u0000", "\x01", "\n", "\ud7ff", "\U0010ffff", "%00"]) + v[i:]
    if isinstance(v, str):
        return urllib.parse.unquote(mutate_text(rng, v))  # a near miss: an id or enum off by one
    return [v] if rng.random() < 0.5 else {"value": v}


def mutate_body(rng, body, other_ids=()):
    """(description, body bytes, content type) of a mutation of a valid body (may be None);
    other_ids: ids of other objects to put where an id is."""
    base = {} if body is None else json.loads(json.dumps(body))
    kinds = [
        "drop", "dup", "extra", "value", "value", "value", "nested", "null_all", "truncate",
        "flip", "empty", "non_json", "content_type", "deep_root", "big", "bad_key", "combo",
        "whitespace", "wrap", "grow", "other_id",
    ]
    kind = rng.choice(kinds)
    ctype = b"application/json"
    paths = slots(base)
    if kind == "drop" and paths:
        path = rng.choice(paths)
        del get_in(base, path[:-1])[path[-1]]
        return f"drop {path}", encode(base), ctype
    if kind == "dup" and containers(base):
        path = rng.choice(containers(base))
        obj = get_in(base, path)
        items = list(obj.items()) or [("k", 1)]
        k, v = rng.choice(items)
        other = mutate_value(rng, v) if rng.random() < 0.5 else v
        pairs = Pairs(items + [(k, other)])
        if path:
            set_in(base, path, pairs)
        else:
            base = pairs
        return f"duplicate key {k!r} at {path}", encode(base), ctype
    if kind == "extra" and containers(base):
        path = rng.choice(containers(base))
        get_in(base, path)[rng.choice(["unknown", "id", "tenant_id", "created_at", "", "a" * 300])] = (
            rng.choice(WRONG_TYPES))
        return f"extra key at {path}", encode(base), ctype
    if kind in ("value", "nested", "combo") and paths:
        n = rng.randint(2, 4) if kind == "combo" else 1
        done = []
        for _ in range(n):
            paths = slots(base)
            if not paths:
                break
            if kind == "nested":
                deeper = [x for x in paths if len(x) > 1] or paths
                path = rng.choice(deeper)
            else:
                path = rng.choice(paths)
            try:
                set_in(base, path, mutate_value(rng, get_in(base, path)))
            except (KeyError, IndexError, TypeError):
                continue
            done.append(path)
        return f"values at {done}", encode(base), ctype
    if kind == "grow":
        # past the limits on counts: messages, tags, scores, spans, traces of a batch, tags
        grown = [x for x in paths if isinstance(get_in(base, x), (list, dict))]
        if grown:
            path = rng.choice(grown)
            v = get_in(base, path)
            n = rng.choice([21, 51, 101, 201, 1001, 5000])
            if isinstance(v, list):
                items = v or [1]
                set_in(base, path, [items[j % len(items)] for j in range(n)])
            else:
                first = next(iter(v.values()), "v")
                v.update({f"k{j}": first for j in range(n)})
            return f"{n} items at {path}", encode(base), ctype
    if kind == "other_id":
        ids = [x for x in paths if isinstance(get_in(base, x), str) and UUID_RE.match(get_in(base, x))]
        if ids and other_ids:
            path = rng.choice(ids)
            set_in(base, path, rng.choice(other_ids))
            return f"another id at {path}", encode(base), ctype
    if kind == "null_all":
        for path in [x for x in paths if len(x) == 1]:
            set_in(base, path, None)
        return "every member null", encode(base), ctype
    text = encode(base)
    if kind == "truncate":
        cut = rng.randrange(len(text) + 1)
        return f"truncated at {cut}", text[:cut], ctype
    if kind == "flip":
        data = bytearray(text)
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return "byte flips", bytes(data), ctype
    if kind == "empty":
        return "empty body", b"", ctype
    if kind == "non_json":
        junk = rng.choice([
            b"null", b"[]", b"123", b'"x"', b"true", b"{", b"}", b"not json", b"\xff\xfe{}",
            b"{}garbage", b"{} {}", b"<xml/>", b"a=1&b=2", b"\x00", b"\xef\xbb\xbf" + text,
            b" " * 1000, bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))),
            b"{'a': 1}", b'{"a":1,}', b"[1,2", b"/* c */{}", b"{\"a\":NaN}",
        ])
        return "not JSON", junk, ctype
    if kind == "content_type":
        ctype = rng.choice([
            b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
            b"application/json; charset=latin1", b"", b"application/xml", b"*/*", None,
        ])
        return f"content type {ctype!r}", text, ctype
    if kind == "deep_root":
        return "deep nesting", encode(deep(rng)) if rng.random() < 0.3 else (
            b'{"a":' + encode(deep(rng)) + b"}"), ctype
    if kind == "big":
        n = rng.choice([(1 << 20) - 10, (1 << 20) + 1, 3 << 20])
        return f"big body {n}", b'{"a":"' + b"x" * max(0, n - 8) + b'"}', ctype
    if kind == "bad_key" and containers(base):
        path = rng.choice(containers(base))
        obj = get_in(base, path)
        key = Raw(b'"' + rng.choice(BAD_UTF8 + BAD_ESCAPES) + b'"')
        pairs = Pairs(list(obj.items()) + [(key, 1)])
        if path:
            set_in(base, path, pairs)
        else:
            base = pairs
        return f"bad key at {path}", encode(base), ctype
    if kind == "whitespace":
        return "whitespace around", b" \t\r\n" * 50 + text + b"\n\n", ctype
    if kind == "wrap":
        return "wrapped", rng.choice([b"[" + text + b"]", text + b"," + text, text + text]), ctype
    return "as is", text, ctype


def query_string(params):
    return "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in params.items()
    )


def mutate_query(rng, params):
    """(description, query string) of a mutation of valid query parameters (names from the
    file's parameters of the operation, given in params)."""
    params = dict(params)
    kind = rng.choice(["value", "value", "value", "drop", "unknown", "repeat", "bare", "bad_name", "junk"])
    keys = list(params)
    if kind == "value" and keys:
        k = rng.choice(keys)
        if rng.random() < 0.5:
            raw = rng.choice(QUERY_VALUES)
        else:
            raw = mutate_text(rng, urllib.parse.quote(params[k], safe=""))
        rest = {x: y for x, y in params.items() if x != k}
        qs = query_string(rest)
        return f"{k}={raw[:40]}", (qs + "&" if qs else "") + f"{k}={raw}"
    if kind == "drop" and keys:
        k = rng.choice(keys)
        del params[k]
        return f"drop {k}", query_string(params)
    if kind == "repeat" and keys:
        k = rng.choice(keys)
        return f"repeat {k}", query_string(params) + f"&{k}={rng.choice(QUERY_VALUES)}"
    if kind == "bare" and keys:
        k = rng.choice(keys)
        rest = {x: y for x, y in params.items() if x != k}
        return f"bare {k}", (query_string(rest) + "&" if rest else "") + k
    if kind == "bad_name":
        name = rng.choice(["%00", "a%00b", "%C0%AF", "%FF", "", "LIMIT", "a" * 500])
        return f"name {name[:20]}", query_string(params) + f"&{name}=1"
    if kind == "junk":
        return "junk", rng.choice(["&&&", "=", "==&=", "%", "?", "a=1;b=2", "#frag", "%%%%"])
    return "unknown", query_string(params) + "&unknown=1"


def mutate_id(rng, valid, other_ids):
    """(description, path segment) of a mutation of a path id."""
    kind = rng.randrange(14)
    if kind == 0:
        return "random uuid", str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind == 1:
        return "upper case", valid.upper()
    if kind == 2:
        return "%00 suffix", valid + "%00" + rng.choice(["", "junk"])
    if kind == 3:
        return "%00 prefix", "%00" + valid
    if kind == 4:
        return "junk", rng.choice(["junk", "0", "-1", "null", "..", "%2e%2e", "x" * 37, "%20"])
    if kind == 5:
        return "long", rng.choice(["a" * 300, "b" * 5000, valid * 100])
    if kind == 6:
        return "invalid UTF-8", rng.choice(["%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%FF"]) + valid[:8]
    if kind == 7:
        return "raw invalid UTF-8", "\udcc0\udcaf" + valid[:8]  # surrogateescape: bytes C0 AF
    if kind == 8:
        return "another object's id", rng.choice(other_ids)
    if kind == 9:
        return "truncated", valid[: rng.randrange(len(valid) + 1)] or "x"
    if kind == 10:
        return "control characters", rng.choice(["%01", "%0A", "%7F", "%09"]) + valid
    if kind == 11:
        return "quote", "%27%20OR%201%3D1%20--"
    if kind == 12:
        return "braces", rng.choice(["{id}", "%7Bid%7D", "*", "%25"])
    return "huge", "z" * 20000  # over the request line limit: 414


# ---- the pass --------------------------------------------------------------------------------


def template_matches(template, path):
    """True when the path (a template itself) fits the template, {name} matching a segment."""
    t, p = template.split("/"), path.split("/")
    return len(t) == len(p) and all(
        a == b or (a.startswith("{") and b != "") for a, b in zip(t, p)
    )


class Pass:
    def __init__(self, args, spec, fixtures):
        self.args = args
        self.spec = spec
        self.f = fixtures
        self.ops = operations(fixtures)
        self.spec_ops = {}
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if method in METHODS:
                    self.spec_ops[(method.upper(), path)] = {str(s) for s in op["responses"]}
        missing = set(self.spec_ops) - set(self.ops)
        if missing:
            sys.exit(f"blackbox: no valid request for {sorted(missing)}: add them to operations()")
        # Requests with a method the file does not list for the path: 405 expected. A method
        # another (templated) path of the file serves is left out: GET /ui/links is a request
        # for the dashboard file "links".
        self.wrong_methods = []
        for path in spec["paths"]:
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                if not any(om == m and template_matches(op, path) for om, op in self.spec_ops):
                    self.wrong_methods.append((m, path))
        self.order = sorted(self.spec_ops)

    def key_for(self, role):
        if role.startswith("ks_"):
            return self.f["ks_keys"][role[3:]]
        return self.f["keys"][role]

    def build(self, i):
        """Request i: (operation, description, method, target bytes, headers, body, raw head)."""
        rng = random.Random(f"{self.args.seed}/{i}")
        n = len(self.order)
        # Every 20th request is one with a method the file does not list for its path.
        if i % 20 == 19:
            method, path = self.wrong_methods[(i // 20) % len(self.wrong_methods)]
            op = self.ops.get(("GET", path)) or self.ops.get(next(k for k in self.ops if k[1] == path))
            target = self.fill(path, op, rng)
            hdrs = self.auth_headers(op, None, rng)
            return (method, path), "method not in the file", method, target.encode(), hdrs, None, None
        key = self.order[(i - i // 20) % n]
        method, path = key
        op = self.ops[key]
        bodies = op.get("body") or [None]
        body_obj = rng.choice(bodies)
        body = None if body_obj is None else encode(body_obj)
        ctype = b"application/json"
        queries = op.get("query") or [{}]
        query = query_string(rng.choice(queries))
        ids = op.get("ids")
        id_ = rng.choice(ids) if ids else None
        what = "valid"
        auth = None
        raw_head = None
        extra = []
        r = rng.random()
        has_body = method in ("POST", "PUT", "PATCH", "DELETE")
        if r < 0.08:
            pass
        elif r < (0.55 if has_body else 0.12):
            what, body, ctype = mutate_body(rng, body_obj, self.other_ids())
        elif r < 0.70:
            what, query = mutate_query(rng, rng.choice(queries))
            what = "query " + what
        elif r < 0.80 and id_ is not None:
            what, id_ = mutate_id(rng, id_, self.other_ids())
            what = "id " + what
        elif r < 0.92:
            auth = rng.choice(self.auth_kinds(op))
            what = "auth " + auth
        elif r < 0.97:
            what, extra, raw_head = self.framing(rng, method)
            what = "framing " + what
        else:
            what, body, ctype = mutate_body(rng, body_obj, self.other_ids())
            what, query = mutate_query(rng, rng.choice(queries))
            what = "body and query " + what
            auth = rng.choice(self.auth_kinds(op))
        target = re.sub(r"\{\w+\}", lambda _: id_ or "", path)
        if query or rng.random() < 0.02:
            target += "?" + query
        hdrs = self.auth_headers(op, auth, rng)
        if body is not None and ctype is not None:
            hdrs.append((b"Content-Type", ctype))
        hdrs += extra
        tb = target.encode("utf-8", "surrogateescape")
        return key, what, method, tb, hdrs, body, raw_head

    def fill(self, path, op, rng):
        ids = op.get("ids") or ["x"]
        return re.sub(r"\{\w+\}", lambda _: rng.choice(ids), path)

    def other_ids(self):
        """Ids of other objects (and another tenant's). Not project A's: no fuzzed rule or
        policy lands there."""
        f = self.f
        return [f["project_b"], f["prompt"], f["environment"], f["rule_a"], f["rule_used"],
                f["tenant"], f["policy_patch"], f["action_block"], f["deployments"][0],
                f["version_1"], f["version_2"], f["ks_project"]]

    def auth_kinds(self, op):
        kinds = ["none", "wrong key", "garbage", "lower-case scheme", "starter",
                 "session", "session without csrf", "bad cookie", "cookie and key"]
        role = op.get("role", "")
        if role in ("owner", "member", "ks_owner"):
            kinds += ["viewer"]
        if role in ("owner", "ks_owner"):
            kinds += ["member"]
        return kinds

    def auth_headers(self, op, auth, rng):
        """Headers for the operation's own credentials, or for a mutation of them."""
        role = op.get("role")
        session = op.get("auth") if op.get("auth", "").startswith("session") else None
        key = self.key_for(role) if role else None
        if auth is None:
            if session:
                cookie, csrf = self.f[session]
                return [(b"Cookie", cookie.encode()), (b"X-CSRF-Token", csrf.encode())]
            return [(b"Authorization", b"Bearer " + key.encode())] if key else []
        # The kill switch routes act on tenant K: their mutations stay in K. Sign-out's own
        # session stands in for the others there, so that session_read never ends.
        ks = bool(role and role.startswith("ks_"))
        cookie, csrf = self.f[session or ("ks_session" if ks else "session_read")]
        viewer = self.key_for("ks_viewer" if ks else "viewer")
        if auth == "none":
            return []
        if auth == "wrong key":
            return [(b"Authorization", b"Bearer pl_%048x" % rng.getrandbits(192))]
        if auth == "garbage":
            return [(b"Authorization", rng.choice(
                [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer  ", b"pl_x", b"Bearer pl_\xc0\xaf",
                 b"Bearer " + b"a" * 2000, b"Token abc"]))]
        if auth == "lower-case scheme":
            return [(b"Authorization", b"bearer " + (key or viewer).encode())]
        if auth == "starter":
            return [(b"Authorization", b"Bearer " + self.f["starter_keys"]["owner"].encode())]
        if auth in ("viewer", "member"):
            return [(b"Authorization", b"Bearer " + self.key_for(("ks_" if ks else "") + auth).encode())]
        if auth == "session":
            return [(b"Cookie", cookie.encode()), (b"X-CSRF-Token", csrf.encode())]
        if auth == "session without csrf":
            return [(b"Cookie", cookie.encode())]
        if auth == "bad cookie":
            return [(b"Cookie", b"pl_session=" + b"0" * 64), (b"X-CSRF-Token", b"x")]
        return [(b"Cookie", cookie.encode()), (b"Authorization", b"Bearer " + viewer.encode())]

    def framing(self, rng, method):
        """Request framing the server refuses before any handler, or odd but valid framing."""
        kind = rng.randrange(12)
        if kind == 9:
            # (none that parses to more than the body sent: the server would wait for the rest)
            return "bad content length", [(b"Content-Length", rng.choice(
                [b"-1", b"abc", b"1e3", b"+5", b"5, 5", b"99999999999999999999", b"0x10"]))], None
        if kind == 10:
            return "huge content length", [(b"Content-Length", b"10000000000")], None
        if kind == 11:
            return "bad chunks", [(b"Transfer-Encoding", b"chunked")], rng.choice(
                [b"chunks:zz", b"chunks:-1", b"chunks:ffffffffffffffffff"])
        if kind == 0:
            return "two content lengths", [(b"Content-Length", b"2"), (b"Content-Length", b"3")], None
        if kind == 1:
            return "length and chunked", [(b"Content-Length", b"2"), (b"Transfer-Encoding", b"chunked")], None
        if kind == 2:
            return "gzip transfer coding", [(b"Transfer-Encoding", b"gzip")], None
        if kind == 3:
            return "space in a header name", [(b"X Bad", b"1")], None
        if kind == 4:
            return "huge header", [(b"X-Pad", b"p" * 20000)], None
        if kind == 5:
            return "many headers", [(f"X-H{j}".encode(), b"v" * 60) for j in range(400)], None
        if kind == 6:
            return "expect 100-continue", [(b"Expect", b"100-continue")], None
        if kind == 7:
            return "no host", [], b"no-host"
        return "HTTP/1.0", [], b"http10"

    def send(self, http, req):
        key, what, method, target, hdrs, body, raw_head = req
        if raw_head == b"no-host":
            head = [method.encode() + b" " + target + b" HTTP/1.1"] + [k + b": " + v for k, v in hdrs]
            if body is not None:
                head.append(b"Content-Length: " + str(len(body)).encode())
            return http.request(method, target, body=body, raw_head=b"\r\n".join(head) + b"\r\n\r\n")
        if raw_head == b"http10":
            return http.request(method, target, hdrs, body, version=b"HTTP/1.0")
        if raw_head and raw_head.startswith(b"chunks:"):
            kind = raw_head[len(b"chunks:"):]
            bad = kind + b"\r\n{}\r\n0\r\n\r\n"
            return http.request(method, target, hdrs, bad)
        if any(h[0] == b"Content-Length" for h in hdrs):
            # the declared length is the mutation: send the body (or none) as it is
            return http.request(method, target, hdrs, body or b"")
        # Framing with Transfer-Encoding: send the body chunked (or as is for gzip).
        if any(h[0] == b"Transfer-Encoding" for h in hdrs) and body is not None:
            if any(h == (b"Transfer-Encoding", b"chunked") for h in hdrs):
                body = (b"%x\r\n" % len(body)) + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        elif any(h[0] == b"Transfer-Encoding" for h in hdrs):
            body = b"0\r\n\r\n"
        return http.request(method, target, hdrs, body)

    def run(self):
        http = Http(os.environ["PL_API_URL"], self.args.timeout)
        per_op = collections.defaultdict(collections.Counter)
        statuses = collections.Counter()
        failures, undocumented = [], {}
        t0 = time.monotonic()
        indexes = self.args.only or range(self.args.count)
        done = 0
        for i in indexes:
            if time.monotonic() - t0 > self.args.max_seconds:
                failures.append((i, None, "the pass ran out of time (--max-seconds)", 0, b""))
                break
            req = self.build(i)
            status, hdrs, data = self.send(http, req)
            done += 1
            key, what, method, target, _, body, _ = req
            listed = key in self.spec_ops
            per_op[key][status] += 1
            statuses[status] += 1
            if status == 0 or status >= 500:
                failures.append((i, req, what, status, data))
            elif listed and str(status) not in self.spec_ops[key]:
                undocumented.setdefault((key, status), (i, req, what, data))
            elif not listed and status != 405:
                # a method the file does not list must be refused as such
                undocumented.setdefault((key, status), (i, req, what, data))
            if self.args.verbose:
                print(f"{i} {status} {method} {target[:120]!r} {what}")
        http.close()
        return done, time.monotonic() - t0, per_op, statuses, failures, undocumented


def services_alive():
    """Problems with the stack's services: a process gone, or /healthz not 200."""
    problems = []
    stack = os.environ.get("PL_STACK_DIR")
    ports = {"api": urllib.parse.urlsplit(os.environ["PL_API_URL"]).port}
    if stack and os.path.isdir(os.path.join(stack, "run")):
        run = os.path.join(stack, "run")
        for name in sorted(os.listdir(run)):
            svc, ext = os.path.splitext(name)
            if ext == ".pid":
                pid = int(open(os.path.join(run, name)).read().strip())
                try:
                    os.kill(pid, 0)
                except OSError:
                    problems.append(f"{svc} (pid {pid}) is not running")
            elif ext == ".port":
                ports[svc] = int(open(os.path.join(run, name)).read().strip())
    for svc, port in sorted(ports.items()):
        status, _, _ = Http(f"http://127.0.0.1:{port}", 10).request("GET", b"/healthz")
        if status != 200:
            problems.append(f"{svc}: GET /healthz answered {status or 'nothing'}")
    return problems


def show_request(req, limit):
    key, what, method, target, hdrs, body, raw_head = req
    lines = [f"    {method} {target.decode('utf-8', 'backslashreplace')}  ({what})"]
    for k, v in hdrs[:8]:
        lines.append(f"    {k.decode()}: {v[:200].decode('utf-8', 'backslashreplace')}")
    if len(hdrs) > 8:
        lines.append(f"    ... ({len(hdrs)} headers in all)")
    if raw_head:
        lines.append(f"    ({raw_head.decode()})")
    if body is not None:
        shown = body[:limit]
        more = f" ... ({len(body)} bytes in all)" if len(body) > limit else ""
        lines.append(f"    body: {shown!r}{more}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10000, help="requests to send")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", type=lambda s: [int(x) for x in s.split(",")],
                    help="replay only these request indexes (comma-separated) of the seed's run")
    ap.add_argument("--spec", default=os.path.join(ROOT, "schemas", "openapi.yaml"))
    ap.add_argument("--timeout", type=float, default=30, help="seconds per request")
    ap.add_argument("--max-seconds", type=float, default=600, help="bound on the whole pass")
    ap.add_argument("--verbose", action="store_true", help="one line per request")
    args = ap.parse_args()
    for var in ("PL_API_URL", "PL_PG_DSN", "PL_BIN_DIR"):
        if not os.environ.get(var):
            sys.exit(f'blackbox: {var} is not set (eval "$(scripts/stack up)" first)')
    with open(args.spec, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)

    t0 = time.monotonic()
    setup_http = Http(os.environ["PL_API_URL"], args.timeout)
    fixtures = Setup(setup_http).run()
    setup_http.close()
    setup_s = time.monotonic() - t0
    p = Pass(args, spec, fixtures)
    done, secs, per_op, statuses, failures, undocumented = p.run()
    problems = services_alive()

    print(f"blackbox: {done} requests, seed {args.seed}, {secs:.1f} s (setup {setup_s:.1f} s)")
    print("requests per endpoint (status: count):")
    for key in sorted(per_op, key=lambda k: (k[1], k[0])):
        c = per_op[key]
        tag = "" if key in p.spec_ops else "  (method not in the file)"
        hist = " ".join(f"{s}:{n}" for s, n in sorted(c.items()))
        print(f"  {key[0]:6} {key[1]:45} {sum(c.values()):5}  {hist}{tag}")
    print("statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"5xx or no answer: {len(failures)}")
    for i, req, what, status, data in failures[:50]:
        if req is None:
            print(f"  {what}")
            continue
        print(f"  request {i} (--seed {args.seed} --only {i}) answered {status or 'nothing'}: "
              f"{data[:300]!r}")
        print(show_request(req, 2000))
    print(f"statuses not in the OpenAPI file for their operation: {len(undocumented)}")
    for (key, status), (i, req, what, data) in sorted(undocumented.items()):
        print(f"  {key[0]} {key[1]}: {status} (request {i}): {data[:200]!r}")
        print(show_request(req, 300))
    print(f"services: {'all alive, /healthz 200' if not problems else '; '.join(problems)}")
    checks = [not failures, not undocumented, not problems]
    print(f"blackbox: {sum(checks)} passed, {len(checks) - sum(checks)} failed")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
